-- Undo 0016: rollups fall back to default_max_windows again (the previous code's
-- migrate puts back its catchup_aggregation_range, which reads that setting)
DELETE FROM tickagg.settings
WHERE setting_key = 'rollup_max_windows';
-- and the export indexes whole again
DROP INDEX tickagg.idx_data_bars_change;
CREATE INDEX idx_data_bars_change ON tickagg.data_bars (canonical_symbol, change_no);
DROP INDEX tickagg.idx_derived_data_bars_change;
CREATE INDEX idx_derived_data_bars_change ON tickagg.derived_data_bars (canonical_symbol, change_no);
