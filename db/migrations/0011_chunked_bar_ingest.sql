-- ingest_staged_bars takes a file in chunks (p_batch_id, p_line_offset): the
-- two-argument version goes; migrate creates the new one from db/functions.
DROP FUNCTION IF EXISTS tickagg.ingest_staged_bars(text, text);
-- bar_rejection_reason takes the future tolerance from a caller that judges many rows.
DROP FUNCTION IF EXISTS tickagg.bar_rejection_reason(
    timestamptz, double precision, double precision, double precision, double precision, double precision,
    double precision, bigint, timestamptz
);
