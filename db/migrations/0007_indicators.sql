-- Technical indicators (issue 7): values per derived bar in a companion table,
-- the checkpoints an indicators task resumes from, the queue of rewinds that
-- corrected bars leave for it, the 'indicators' task kind and the parameters.
-- Behaviour lives in db/functions (indicators_step, anchored_vwap, ...).

-- Every kind planned this session is listed, whichever migration lands first.
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (
    task_kind IN (
        'rollup', 'ticks_1m', 'export', 'gap_scan', 'gap_scan_history', 'ticks_retention', 'indicators'
    )
);

-- Kept apart from derived_data_bars so an indicator write never rewrites the
-- OHLCV row: no rollup invalidation, no derivation_version bump, no bloat of the
-- table every rollup and real-time view reads. change_no comes from the bars'
-- sequence, so the ClickHouse exporter re-sends a bar whose indicators changed.
CREATE TABLE tickagg.derived_bar_indicators (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    ts_utc timestamptz NOT NULL,
    indicators jsonb NOT NULL,
    change_no bigint NOT NULL DEFAULT nextval('tickagg.bar_change_seq'),
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, timeframe, ts_utc)
);

CREATE INDEX idx_derived_bar_indicators_change ON tickagg.derived_bar_indicators (canonical_symbol, change_no);

-- The complete state of the indicator computation after one bar (bar_no bars
-- seen so far): recursive values (EMAs, Wilder averages, running sums) and the
-- ring buffers of the windowed ones, so a run resumes from a checkpoint without
-- reading older bars. params: the parameter settings the state was built with.
CREATE TABLE tickagg.indicator_checkpoints (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    ts_utc timestamptz NOT NULL,
    bar_no bigint NOT NULL,
    params text NOT NULL,
    state double precision[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, timeframe, ts_utc)
);

-- A derived bar written, rewritten or deleted: the indicators of that symbol and
-- timeframe must be recomputed from from_ts on. A queue (not a cursor update)
-- so a rewind that commits while an indicators run is in flight is not lost.
CREATE TABLE tickagg.indicator_rewinds (
    rewind_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    from_ts timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_indicator_rewinds_task ON tickagg.indicator_rewinds (canonical_symbol, timeframe);

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
('indicators_enabled', 'true', 'sync gives every rollup task an indicators task'),
('indicators_priority', '120', 'task_priority of new indicators tasks (rollups 100, gap scans 150)'),
('indicators_max_bars', '10000', 'bars one indicators run computes'),
('indicators_checkpoint_every', '256', 'bars between two indicator checkpoints (the most a rewind recomputes)'),
('indicator_sma_periods', '7,14,21,50,200', 'SMA periods (keys sma_N)'),
('indicator_ema_periods', '7,14,21,50,200', 'EMA periods (keys ema_N)'),
('indicator_rsi_period', '14', 'RSI period (Wilder)'),
('indicator_macd', '12,26,9', 'MACD fast, slow, signal periods'),
('indicator_bbands', '20,2', 'Bollinger period and deviations'),
('indicator_atr_period', '14', 'ATR period (Wilder)'),
('indicator_stoch', '14,3,3', 'stochastic fast %K, slow %K and %D periods'),
('indicator_cci_period', '20', 'CCI period'),
('indicator_mfi_period', '14', 'MFI period'),
('indicator_adx_period', '14', 'ADX, +DI and -DI period');

-- export_batch gains the indicators column: a changed result type needs a drop.
DROP FUNCTION IF EXISTS tickagg.export_batch(text, bigint, integer, bigint);
