-- Statement trigger on DELETE FROM data_bars: remember each deleted minute with
-- a new change_no and a tombstone version one above the deleted row's version,
-- so the exporter can send the deletion and a later re-insert still wins.
CREATE OR REPLACE FUNCTION tickagg.record_data_bar_tombstones()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    INSERT INTO tickagg.data_bars_tombstones AS t (canonical_symbol, ts_utc, change_no, version)
    SELECT
        o.canonical_symbol, o.ts_utc, nextval('tickagg.bar_change_seq'),
        tickagg.export_version(o.source_rank, o.change_no, p.version, p.change_no) + 1
    FROM changed_rows AS o
    LEFT JOIN tickagg.data_bars_tombstones AS p
        ON p.canonical_symbol = o.canonical_symbol AND p.ts_utc = o.ts_utc
    ON CONFLICT (canonical_symbol, ts_utc) DO UPDATE SET
        change_no = excluded.change_no, version = excluded.version, deleted_at = now();
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.record_data_bar_tombstones() IS
'AFTER DELETE statement trigger on data_bars: tombstones the exporter sends to ClickHouse as deletions.';
