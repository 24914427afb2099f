-- Undo 0016: back to 10,000 buckets per catch-up call, unless changed since.
UPDATE tickagg.settings SET setting_value = '10000'
WHERE setting_key = 'default_max_windows' AND setting_value = '50000';
-- and the export indexes whole again
DROP INDEX tickagg.idx_data_bars_change;
CREATE INDEX idx_data_bars_change ON tickagg.data_bars (canonical_symbol, change_no);
DROP INDEX tickagg.idx_derived_data_bars_change;
CREATE INDEX idx_derived_data_bars_change ON tickagg.derived_data_bars (canonical_symbol, change_no);
