-- The ClickHouse `aggregates.version` of a bar: source_rank * 2^48 + change_no.
-- A higher-ranked source always wins whatever its change numbers (change_no stays
-- below 2^48, ranks between 0 and 32767), a later write of the same source wins
-- (change_no only grows), and re-exporting an unchanged row gives the same
-- version (an identical write is a no-op that keeps its change_no). p_floor lifts
-- the version above a tombstone of the same minute (see export_batch).
CREATE OR REPLACE FUNCTION tickagg.export_version(
    p_source_rank integer,
    p_change_no bigint,
    p_floor_version bigint DEFAULT NULL,
    p_floor_change_no bigint DEFAULT NULL
)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT greatest(
        (least(greatest(p_source_rank, 0), 32767))::bigint * 281474976710656 + p_change_no,
        p_floor_version + (p_change_no - p_floor_change_no)
    )
$$;

COMMENT ON FUNCTION tickagg.export_version(integer, bigint, bigint, bigint) IS
'ClickHouse version of a bar: source_rank * 2^48 + change_no, lifted above a tombstone of the same minute.';
