-- Undo 0011: the previous code's migrate re-creates the two-argument version.
DROP FUNCTION IF EXISTS tickagg.ingest_staged_bars(text, text, bigint, bigint);
DROP FUNCTION IF EXISTS tickagg.bar_rejection_reason(
    timestamptz, double precision, double precision, double precision, double precision, double precision,
    double precision, bigint, timestamptz, interval
);
