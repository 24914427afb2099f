-- Undo 0006: ticks, their rejects, tasks, bar column and settings.
DELETE FROM tickagg.data_agg_state
WHERE task_kind IN ('ticks_1m', 'ticks_retention');
DELETE FROM tickagg.agg_invalidations
WHERE timeframe = '1m';
DROP TABLE tickagg.tick_rejects CASCADE;
DROP TABLE tickagg.ticks CASCADE;
DROP SEQUENCE tickagg.tick_seq;
ALTER TABLE tickagg.data_bars DROP COLUMN volume_kind CASCADE;
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (task_kind IN ('rollup', 'ticks_1m', 'export', 'gap_scan', 'gap_scan_history'));
DELETE FROM tickagg.settings
WHERE setting_key IN (
        'ticks_retention', 'ticks_partitions_ahead', 'ticks_1m_delay', 'tick_future_tolerance',
        'ticks_1m_priority', 'ticks_retention_interval', 'ticks_retention_priority'
    );
