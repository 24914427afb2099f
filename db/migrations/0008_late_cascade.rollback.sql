-- Undo 0008. The previous code's migrate re-creates its rollup_ranges(text, text,
-- tstzmultirange); the functions that call the new signature go with it.
DROP FUNCTION IF EXISTS tickagg.rollup_cascade_dirty(text, text, text, integer, tstzmultirange, boolean);
DROP FUNCTION IF EXISTS tickagg.rollup_ranges(text, text[], tstzmultirange[], text);
ALTER TABLE tickagg.agg_invalidations DROP COLUMN created_by_xact;
