-- Whether data_bars is a TimescaleDB hypertable with compression enabled
-- (`migrate --timescaledb --compress-after`): TimescaleDB then refuses DELETE
-- triggers with transition tables, and db/post collects deleted rows instead
-- (data_bars_collect_deletes). False on a server without TimescaleDB.
CREATE OR REPLACE FUNCTION tickagg.data_bars_compressed()
RETURNS boolean
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    -- absent where TimescaleDB is not installed, hence the dynamic query
    v_hypertables regclass := to_regclass('timescaledb_information.hypertables');
    v_compressed boolean;
BEGIN
    IF v_hypertables IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        $sql$
        SELECT coalesce(bool_or(h.compression_enabled), false)
        FROM %s AS h
        WHERE h.hypertable_schema = 'tickagg' AND h.hypertable_name = 'data_bars'
        $sql$,
        v_hypertables
    ) INTO v_compressed;
    RETURN v_compressed;
END
$$;

COMMENT ON FUNCTION tickagg.data_bars_compressed() IS
'True where data_bars is a compressed TimescaleDB hypertable (its deletes are then collected, not seen through transition tables).';
