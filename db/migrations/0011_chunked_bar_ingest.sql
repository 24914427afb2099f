-- ingest_staged_bars takes a file in chunks (p_batch_id, p_line_offset): the
-- two-argument version goes; migrate creates the new one from db/functions.
DROP FUNCTION IF EXISTS tickagg.ingest_staged_bars(text, text);
