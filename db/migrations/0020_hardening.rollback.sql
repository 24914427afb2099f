-- Undo 0020. The rewinds it merged stay merged: the earliest of a series is
-- all any run of the previous code needs from them. The previous code's
-- migrate re-creates its rollup_ranges and rollup_ranges_batch.
DROP FUNCTION IF EXISTS tickagg.rollup_ranges(text[], text[], tstzmultirange[], text);
DROP INDEX tickagg.idx_calendar_days_open;
