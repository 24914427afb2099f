-- Undo 0010. The previous code's migrate re-creates its two trigger functions on
-- derived_data_bars and their triggers; until it runs, writes there record
-- nothing for the levels above or the indicators (stop ingest and runners first).
DROP TRIGGER IF EXISTS derived_data_bars_changed_insert ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_changed_update ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_changed_delete ON tickagg.derived_data_bars;
DROP FUNCTION IF EXISTS tickagg.derived_bars_changed();
COMMENT ON TABLE tickagg.indicator_rewinds IS NULL;
