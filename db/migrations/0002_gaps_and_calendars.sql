-- Gap ledger, gap-scan tasks, completeness thresholds and coverage settings (issue 4).
-- Holidays and early closes are not shipped here: `tickagg calendars import` fills
-- them from the exchange_calendars package, and users may add rows for any year.

-- Two gap-scan task kinds: gap_scan (live: the recent window, every few minutes)
-- and gap_scan_history (everything older, daily), both on timeframe '1m'.
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (task_kind IN ('rollup', 'ticks_1m', 'export', 'gap_scan', 'gap_scan_history'));

-- Share of a timeframe's expected bars that must be present to call a period
-- complete in gap and coverage reports (seeds/003 item 13: intraday 100%,
-- daily and weekly 80%).
ALTER TABLE tickagg.timeframes
ADD COLUMN completeness_pct numeric NOT NULL DEFAULT 100
CHECK (completeness_pct BETWEEN 0 AND 100);

UPDATE tickagg.timeframes SET completeness_pct = 80
WHERE timeframe IN ('1d', '1w');

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
(
    'gap_scan_live_window', '7 days',
    'how far back the live gap scan looks; never further than ticks_retention when that is set'
),
('gap_scan_live_interval', '5 minutes', 'run_interval of new live gap_scan tasks'),
('gap_scan_history_interval', '1 day', 'run_interval of new gap_scan_history tasks'),
('gap_scan_live_priority', '150', 'task_priority of new live gap_scan tasks (rollups default to 100)'),
('gap_scan_history_priority', '250', 'task_priority of new gap_scan_history tasks'),
('coverage_24h_min_pct', '99', 'coverage view flags a symbol whose last 24 hours have less 1m coverage'),
('coverage_7d_min_pct', '98', 'coverage view flags a symbol whose last 7 days have less 1m coverage'),
('gap_max_open_age', '24 hours', 'coverage view flags a symbol whose oldest open gap is older');

-- One row per run of missing 1-minute bars inside open sessions, per symbol.
-- gap_end is exclusive. A row stays open (filled_at NULL) while every minute of
-- it is still missing; it may grow while the gap does. When data arrives the row
-- is closed: resolution 'filled' (nothing of it missing any more), 'partly_filled'
-- (the minutes still missing are new rows) or 'merged' (absorbed into a larger gap).
CREATE TABLE tickagg.gap_ledger (
    gap_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL DEFAULT '1m' REFERENCES tickagg.timeframes (timeframe),
    gap_start timestamptz NOT NULL,
    gap_end timestamptz NOT NULL,
    missing_minutes bigint NOT NULL CHECK (missing_minutes > 0),
    detected_by text NOT NULL CHECK (detected_by IN ('live', 'history', 'manual')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    filled_at timestamptz,
    resolution text CHECK (resolution IN ('filled', 'partly_filled', 'merged')),
    CHECK (gap_end > gap_start),
    CHECK ((filled_at IS NULL) = (resolution IS NULL))
);

-- At most one open gap per symbol and start; open gaps are what scans reconcile.
CREATE UNIQUE INDEX idx_gap_ledger_open ON tickagg.gap_ledger (canonical_symbol, timeframe, gap_start)
WHERE filled_at IS NULL;

CREATE INDEX idx_gap_ledger_symbol ON tickagg.gap_ledger (canonical_symbol, gap_start);
