-- Core schema: reference data, bar tables, the task table and ingest bookkeeping.
-- Behaviour lives in db/functions and db/views, re-applied by every `tickagg migrate`.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tickagg_runner') THEN
        CREATE ROLE tickagg_runner NOLOGIN;
    END IF;
END
$$;

CREATE TABLE tickagg.settings (
    setting_key text PRIMARY KEY,
    setting_value text NOT NULL,
    description text NOT NULL
);

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
('default_agg_start', '2025-07-01 00:00:00+00', 'agg_start_utc of tasks created by sync without an explicit start'),
('hard_fail_threshold', '3', 'consecutive hard failures before a task is hard_failed (mandatory) or disabled'),
('backoff_base_seconds', '5', 'first retry delay after a failure; doubles per consecutive failure'),
('backoff_max_seconds', '900', 'upper bound of the retry delay'),
('default_max_windows', '10000', 'buckets one catch-up call may materialise when the task sets none'),
('future_tolerance', '5 minutes', 'how far in the future a bar timestamp may be before ingest rejects it');

-- Rollup hierarchy: each timeframe is built from its source timeframe.
-- bucket_kind: minute (the 1m source), fixed (a fixed step inside a session),
-- day (one trading session), week (one trading week).
CREATE TABLE tickagg.timeframes (
    timeframe text PRIMARY KEY,
    bucket_kind text NOT NULL CHECK (bucket_kind IN ('minute', 'fixed', 'day', 'week')),
    step interval NOT NULL,
    source_timeframe text REFERENCES tickagg.timeframes (timeframe),
    sort_order integer NOT NULL UNIQUE,
    usable_quality_pct numeric NOT NULL DEFAULT 80 CHECK (usable_quality_pct BETWEEN 0 AND 100),
    -- How long a closed bucket may wait to be materialised before aggregation_health
    -- says WARNING / DELAYED (seed 002's 2 and 5 minutes).
    health_warning_lag interval NOT NULL DEFAULT '2 minutes',
    health_delayed_lag interval NOT NULL DEFAULT '5 minutes',
    CHECK ((bucket_kind = 'minute') = (source_timeframe IS NULL))
);

INSERT INTO tickagg.timeframes (timeframe, bucket_kind, step, source_timeframe, sort_order) VALUES
('1m', 'minute', '1 minute', NULL, 1),
('5m', 'fixed', '5 minutes', '1m', 2),
('15m', 'fixed', '15 minutes', '5m', 3),
('30m', 'fixed', '30 minutes', '15m', 4),
('1h', 'fixed', '1 hour', '30m', 5),
('4h', 'fixed', '4 hours', '1h', 6),
('1d', 'day', '1 day', '4h', 7),
('1w', 'week', '7 days', '1d', 8);

-- A trading date D has the session [D + session_open_offset, D + session_close_offset)
-- in local wall-clock time of time_zone; converting each end separately keeps DST right.
CREATE TABLE tickagg.market_calendars (
    calendar_code text PRIMARY KEY,
    description text NOT NULL,
    time_zone text NOT NULL,
    session_open_offset interval NOT NULL,
    session_close_offset interval NOT NULL,
    trading_isodows integer[] NOT NULL,
    CHECK (session_close_offset > session_open_offset),
    CHECK (session_close_offset - session_open_offset <= interval '1 day'),
    CHECK (trading_isodows <@ ARRAY[1, 2, 3, 4, 5, 6, 7])
);

INSERT INTO tickagg.market_calendars
(calendar_code, description, time_zone, session_open_offset, session_close_offset, trading_isodows)
VALUES
(
    'forex_24x5', 'Forex: trading day opens 17:00 New York on the prior calendar day, Sunday to Friday',
    'America/New_York', '-7 hours', '17 hours', '{1,2,3,4,5}'
),
('crypto_24x7', 'Crypto: UTC days, every day', 'UTC', '0 hours', '24 hours', '{1,2,3,4,5,6,7}'),
('nse_equity', 'NSE cash market 09:15-15:30 Asia/Kolkata', 'Asia/Kolkata', '09:15', '15:30', '{1,2,3,4,5}'),
('us_equity', 'US equities 09:30-16:00 America/New_York', 'America/New_York', '09:30', '16:00', '{1,2,3,4,5}');

-- A holiday row closes the trading date; with early_close it closes early instead.
CREATE TABLE tickagg.market_holidays (
    calendar_code text NOT NULL REFERENCES tickagg.market_calendars (calendar_code),
    holiday_date date NOT NULL,
    early_close time,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (calendar_code, holiday_date)
);

-- Higher rank wins; sources not listed are vendor sources of rank 0.
CREATE TABLE tickagg.bar_sources (
    source text PRIMARY KEY,
    source_rank integer NOT NULL,
    description text NOT NULL
);

INSERT INTO tickagg.bar_sources (source, source_rank, description) VALUES
('live_aggregated', 30, 'built from live ticks by tickagg'),
('live_gap_filled', 20, 'rebuilt from late ticks'),
('historical_aggregated', 10, 'aggregated from historical ticks'),
('polygon_historical', 0, 'vendor bars');

CREATE TABLE tickagg.core_asset_registry_all (
    canonical_symbol text PRIMARY KEY,
    asset_class text,
    calendar_code text NOT NULL REFERENCES tickagg.market_calendars (calendar_code),
    active boolean NOT NULL DEFAULT true,
    test_active boolean NOT NULL DEFAULT false,
    is_mandatory boolean NOT NULL DEFAULT false,
    source_kind text NOT NULL DEFAULT 'bars' CHECK (source_kind IN ('ticks', 'bars')),
    price_kind text NOT NULL DEFAULT 'last' CHECK (price_kind IN ('last', 'mid')),
    timeframes text[] NOT NULL DEFAULT '{5m,15m,30m,1h,4h,1d,1w}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every write to a bar table takes a number from here; the exporter follows it.
CREATE SEQUENCE tickagg.bar_change_seq;

CREATE TABLE tickagg.data_bars (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL DEFAULT '1m' CHECK (timeframe = '1m'),
    ts_utc timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL DEFAULT 0,
    vwap double precision,
    trade_count bigint,
    source text NOT NULL,
    source_rank integer NOT NULL,
    change_no bigint NOT NULL DEFAULT nextval('tickagg.bar_change_seq'),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, timeframe, ts_utc),
    -- A guard for writers that bypass ingest; ingest explains rejections row by row.
    CONSTRAINT data_bars_valid_ohlcv CHECK (
        low > 0 AND high < 'Infinity' AND low <= high
        AND open BETWEEN low AND high AND close BETWEEN low AND high
        AND volume >= 0 AND volume < 'Infinity'
        AND (vwap IS NULL OR vwap BETWEEN low AND high)
        AND (trade_count IS NULL OR trade_count >= 0)
    )
);

CREATE TABLE tickagg.derived_data_bars (
    canonical_symbol text NOT NULL,
    -- No foreign key: only rollup tasks (which have one) write here, and a per-row
    -- check cost 10% of a catch-up.
    timeframe text NOT NULL,
    ts_utc timestamptz NOT NULL,
    bucket_end timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    vwap double precision,
    trade_count bigint,
    source_candles integer NOT NULL,
    expected_candles integer NOT NULL,
    quality_score smallint NOT NULL CHECK (quality_score IN (0, 1, 2)),
    is_partial boolean NOT NULL,
    derivation_version integer NOT NULL DEFAULT 1,
    deleted_at timestamptz,
    change_no bigint NOT NULL DEFAULT nextval('tickagg.bar_change_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, timeframe, ts_utc)
);

CREATE TABLE tickagg.data_agg_state (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL REFERENCES tickagg.timeframes (timeframe),
    -- the timeframe's step, copied so the claim order (shorter timeframe first on
    -- equal lag) is an index order: with many symbols at one cursor, a join for it
    -- forced a sort of every tied task
    timeframe_step interval NOT NULL,
    task_kind text NOT NULL CHECK (task_kind IN ('rollup', 'ticks_1m', 'export', 'gap_scan')),
    status text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'hard_failed', 'disabled')),
    enabled boolean NOT NULL DEFAULT true,
    task_priority integer NOT NULL DEFAULT 100,
    is_mandatory boolean NOT NULL DEFAULT false,
    agg_start_utc timestamptz NOT NULL,
    last_agg_bar_ts_utc timestamptz NOT NULL,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    run_interval interval NOT NULL DEFAULT '1 minute',
    aggregation_delay interval NOT NULL DEFAULT '2 minutes',
    max_windows integer CHECK (max_windows > 0),
    hard_fail_streak integer NOT NULL DEFAULT 0,
    transient_fail_streak integer NOT NULL DEFAULT 0,
    running_started_at_utc timestamptz,
    claim_token uuid,
    lease_expires_at timestamptz,
    last_successful_at_utc timestamptz,
    last_attempt_at_utc timestamptz,
    last_error text,
    runs_total bigint NOT NULL DEFAULT 0,
    failures_total bigint NOT NULL DEFAULT 0,
    bars_written_total bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, timeframe, task_kind),
    CHECK ((status = 'running') = (claim_token IS NOT NULL))
);

CREATE INDEX idx_agg_state_due_priority ON tickagg.data_agg_state (
    is_mandatory DESC, task_priority ASC, last_agg_bar_ts_utc ASC, timeframe_step ASC
) WHERE enabled AND status = 'idle';

CREATE INDEX idx_agg_state_next_run ON tickagg.data_agg_state (next_run_at)
WHERE enabled AND status = 'idle';

CREATE INDEX idx_agg_state_lease ON tickagg.data_agg_state (lease_expires_at)
WHERE status = 'running';

-- Source ranges written since a dependent task last ran; consumed by that task.
CREATE TABLE tickagg.agg_invalidations (
    invalidation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    dirty_range tstzrange NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_agg_invalidations_task ON tickagg.agg_invalidations (canonical_symbol, timeframe);

CREATE TABLE tickagg.ingest_batches (
    batch_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    rows_total bigint NOT NULL DEFAULT 0,
    rows_landed bigint NOT NULL DEFAULT 0,
    rows_unchanged bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0
);

CREATE TABLE tickagg.ingest_rejects (
    batch_id bigint NOT NULL REFERENCES tickagg.ingest_batches (batch_id) ON DELETE CASCADE,
    line_no bigint NOT NULL,
    raw_row jsonb NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (batch_id, line_no)
);

CREATE TABLE tickagg.schema_files (
    path text PRIMARY KEY,
    sha256 text NOT NULL,
    definition_md5 text,
    applied_at timestamptz NOT NULL DEFAULT now()
);
