-- OHLCV bars mirrored from PostgreSQL (1m from data_bars, 5m..1w derived).
-- version = source_rank * 2^48 + change_no (see tickagg.export_version): the
-- highest version of a key wins in FINAL, and a row whose winner has
-- is_deleted = 1 disappears from FINAL.
CREATE TABLE IF NOT EXISTS aggregates
(
    symbol LowCardinality(String),
    timeframe LowCardinality(String),
    timestamp DateTime64(3, 'UTC'),
    open Float64,
    high Float64,
    low Float64,
    close Float64,
    volume Float64,
    vwap Nullable(Float64),
    trade_count Nullable(UInt64),
    source LowCardinality(String),
    quality_score UInt8,
    source_candles UInt32,
    expected_candles UInt32,
    is_partial UInt8,
    indicators String DEFAULT '{}',
    is_deleted UInt8 DEFAULT 0,
    version UInt64,
    created_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (symbol, timeframe, timestamp);
