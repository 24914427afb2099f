-- Ticks (issue 5, and issue 8's storage part): the partitioned ticks table, its
-- arrival sequence, rejected ticks, the ticks_1m and ticks_retention task kinds
-- and their settings. Behaviour lives in db/functions (ticks_*, ingest_*ticks*).

-- Every task kind of this session, so the ticks and indicators branches agree
-- whichever merges first.
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (
    task_kind IN (
        'rollup', 'ticks_1m', 'export', 'gap_scan', 'gap_scan_history', 'ticks_retention', 'indicators'
    )
);

-- Arrival order of ticks: equal timestamps are ordered by it (lower = earlier).
CREATE SEQUENCE tickagg.tick_seq;

-- Raw ticks, one partition per UTC day (ticks_pYYYYMMDD), created ahead and
-- dropped after ticks_retention by the ticks_retention task (ticks_retention_run).
-- No default partition: a default partition holding rows of a day would make
-- creating that day's partition fail; ingest creates missing days instead.
CREATE TABLE tickagg.ticks (
    canonical_symbol text NOT NULL,
    ts_utc timestamptz NOT NULL,
    bid double precision,
    ask double precision,
    last_price double precision,
    size double precision,
    tick_seq bigint NOT NULL DEFAULT nextval('tickagg.tick_seq'),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    -- A guard for writers that bypass ingest; ingest explains rejections row by row.
    CONSTRAINT ticks_valid CHECK (
        (bid IS NULL OR (bid > 0 AND bid < 'Infinity'))
        AND (ask IS NULL OR (ask > 0 AND ask < 'Infinity'))
        AND (last_price IS NULL OR (last_price > 0 AND last_price < 'Infinity'))
        AND (size IS NULL OR (size >= 0 AND size < 'Infinity'))
        AND (bid IS NULL OR ask IS NULL OR bid <= ask)
        AND coalesce(bid, ask, last_price) IS NOT NULL
    )
) PARTITION BY RANGE (ts_utc);

-- An exact duplicate (every field equal, missing fields included) is one tick:
-- feeds and files get re-sent. Leading with (symbol, ts_utc) it is also the index
-- the 1-minute aggregation reads in time order.
CREATE UNIQUE INDEX idx_ticks_unique ON tickagg.ticks (
    canonical_symbol, ts_utc, bid, ask, last_price, size
) NULLS NOT DISTINCT;

-- Ticks that failed validation, from files (batch_id, line_no) or from the SQL
-- path tickagg.ingest_ticks (batch_id NULL).
CREATE TABLE tickagg.tick_rejects (
    reject_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id bigint REFERENCES tickagg.ingest_batches (batch_id) ON DELETE CASCADE,
    line_no bigint,
    canonical_symbol text,
    raw_row jsonb NOT NULL,
    reason text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_tick_rejects_batch ON tickagg.tick_rejects (batch_id, line_no);

CREATE INDEX idx_tick_rejects_time ON tickagg.tick_rejects (rejected_at);

-- How a 1-minute bar's volume was measured: 'size' (sum of traded sizes) or
-- 'ticks' (tick count, for quote-only feeds); NULL for bars from files/vendors.
ALTER TABLE tickagg.data_bars
ADD COLUMN volume_kind text CHECK (volume_kind IN ('size', 'ticks'));

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
('ticks_retention', '7 days', 'ticks older than this are dropped, whole daily partitions at a time'),
('ticks_partitions_ahead', '3', 'daily ticks partitions the retention task keeps created ahead of today'),
(
    'ticks_1m_delay', '200 milliseconds',
    'a minute closes this long after its end (or at once when a later tick of the symbol arrives)'
),
('tick_future_tolerance', '5 seconds', 'ticks timestamped further in the future than this are rejected'),
('ticks_1m_priority', '50', 'task_priority of new ticks_1m tasks (rollups default to 100)'),
('ticks_retention_interval', '1 hour', 'run_interval of new ticks_retention tasks'),
('ticks_retention_priority', '250', 'task_priority of new ticks_retention tasks');
