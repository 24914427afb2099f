-- Undo 0002: the gap ledger, gap-scan tasks, completeness thresholds and settings.
-- CASCADE: the views over it come back with the code that knows them.
DROP TABLE tickagg.gap_ledger CASCADE;

DELETE FROM tickagg.data_agg_state
WHERE task_kind IN ('gap_scan', 'gap_scan_history');
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (task_kind IN ('rollup', 'ticks_1m', 'export', 'gap_scan'));

ALTER TABLE tickagg.timeframes DROP COLUMN completeness_pct CASCADE;

DELETE FROM tickagg.settings
WHERE setting_key IN (
        'gap_scan_live_window', 'gap_scan_live_interval', 'gap_scan_history_interval',
        'gap_scan_live_priority', 'gap_scan_history_priority',
        'coverage_24h_min_pct', 'coverage_7d_min_pct', 'gap_max_open_age'
    );
