-- Undo 0004: export tasks, cursor, tombstones, horizon, indexes and settings.
DROP TRIGGER IF EXISTS data_bars_export_tombstones ON tickagg.data_bars;
DELETE FROM tickagg.data_agg_state
WHERE task_kind = 'export';
ALTER TABLE tickagg.data_agg_state DROP COLUMN export_change_no CASCADE;
DROP TABLE tickagg.data_bars_tombstones CASCADE;
DROP TABLE tickagg.export_horizon CASCADE;
DROP INDEX tickagg.idx_data_bars_change;
DROP INDEX tickagg.idx_derived_data_bars_change;
DELETE FROM tickagg.settings
WHERE setting_key IN ('export_batch_size', 'export_interval', 'export_priority', 'export_derived_source');
