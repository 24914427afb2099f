-- Undo 0011: the previous code's migrate re-creates the two-argument version.
DROP FUNCTION IF EXISTS tickagg.ingest_staged_bars(text, text, bigint, bigint);
