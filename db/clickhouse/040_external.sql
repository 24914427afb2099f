-- External data of seeds/001 (loaded by `tickagg ingest external TABLE FILE`;
-- external_market_sessions by `tickagg external sessions-snapshot`).
-- Each is ReplacingMergeTree(collected_at) whose ORDER BY is the identity of an
-- observation, so re-ingesting it never duplicates (query with FINAL); a later
-- collection of the same observation replaces the earlier one. Retention:
-- TTL 365 days after collected_at; change it with `tickagg external set-ttl DAYS`
-- (ALTER TABLE ... MODIFY TTL on every table; the file is never edited).
CREATE TABLE IF NOT EXISTS external_economic_calendar
(
    date Date,
    time String,
    currency LowCardinality(String),
    event String,
    forecast Nullable(String),
    previous Nullable(String),
    actual Nullable(String),
    impact LowCardinality(String),
    source LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
PARTITION BY toYYYYMM(date)
ORDER BY (date, currency, event, time)
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS external_fred_economic
(
    series_id LowCardinality(String),
    value Float64,
    observation_date Date,
    source LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
ORDER BY (series_id, observation_date)
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS external_crypto_sentiment
(
    coin_id LowCardinality(String),
    name String,
    symbol LowCardinality(String),
    price_usd Float64,
    price_change_24h Nullable(Float64),
    market_cap_rank Nullable(UInt32),
    sentiment_votes_up Nullable(Float64),
    community_score Nullable(Float64),
    twitter_followers Nullable(UInt64),
    reddit_subscribers Nullable(UInt64),
    source LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
ORDER BY (coin_id, collected_at)
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS external_fear_greed_index
(
    value UInt8,
    classification LowCardinality(String),
    sentiment_score Float64,
    index_timestamp DateTime('UTC'),
    source LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
ORDER BY (source, index_timestamp)
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS external_commodity_prices
(
    symbol LowCardinality(String),
    name String,
    currency LowCardinality(String),
    price Float64,
    previous_close Nullable(Float64),
    change Nullable(Float64),
    change_percent Nullable(Float64),
    volume Nullable(Float64),
    source LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
ORDER BY (symbol, collected_at)
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS external_market_sessions
(
    active_sessions_count UInt8,
    active_sessions Array(LowCardinality(String)),
    liquidity_level LowCardinality(String),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(collected_at)
ORDER BY collected_at
TTL toDateTime(collected_at) + INTERVAL 365 DAY;

-- Rows `tickagg ingest external` refused: file, line, reason and the raw record.
CREATE TABLE IF NOT EXISTS external_rejects
(
    table_name LowCardinality(String),
    file_name String,
    line_no UInt64,
    reason String,
    raw String,
    rejected_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (table_name, rejected_at, file_name, line_no)
TTL toDateTime(rejected_at) + INTERVAL 365 DAY;
