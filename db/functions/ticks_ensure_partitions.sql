-- Make the daily partitions ticks_pYYYYMMDD covering [p_from, p_to] (UTC days)
-- ready for the caller's writes, and return the names created.
--   * A missing day is created as a table of its own and then attached: ATTACH
--     PARTITION locks ticks only against other DDL (SHARE UPDATE EXCLUSIVE), so
--     readers and other producers go on while the caller's transaction lasts
--     (CREATE TABLE ... PARTITION OF locked all of ticks, reads included, until
--     the producer committed). Two sessions creating the same day serialise on
--     an advisory lock; the second then finds the first's table (an advisory
--     lock does not refresh this session's catalog cache, so the check after it
--     can miss a table committed meanwhile: CREATE reports it as a duplicate,
--     which counts as found).
--   * A day that exists is locked ROW EXCLUSIVE until the caller commits, so
--     retention (ticks_retention_run) cannot drop it between this check and the
--     caller's insert: it waits, then leaves the day to its next run. A day
--     dropped before the lock was granted is created again.
CREATE OR REPLACE FUNCTION tickagg.ticks_ensure_partitions(
    p_from timestamptz,
    p_to timestamptz
)
RETURNS text[]
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET timezone = 'UTC'
AS $$
DECLARE
    v_day date;
    v_name text;
    v_created text[] := '{}';
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN v_created;
    END IF;
    IF p_to - p_from > interval '366 days' THEN
        RAISE EXCEPTION 'refusing to create ticks partitions for % days', (p_to::date - p_from::date)
            USING ERRCODE = 'TK004', HINT = 'Ticks are short-lived (ticks_retention); load less at once.';
    END IF;
    FOR v_day IN SELECT d::date FROM generate_series(p_from::date, p_to::date, interval '1 day') AS g (d) LOOP
        v_name := 'ticks_p' || to_char(v_day, 'YYYYMMDD');
        IF to_regclass('tickagg.' || v_name) IS NOT NULL THEN
            BEGIN
                EXECUTE format('LOCK TABLE tickagg.%I IN ROW EXCLUSIVE MODE', v_name);
                CONTINUE;
            EXCEPTION WHEN undefined_table THEN
                NULL;  -- retention dropped it meanwhile: create it again
            END;
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext('tickagg.ticks_partitions'));
        CONTINUE WHEN to_regclass('tickagg.' || v_name) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE tickagg.%I (LIKE tickagg.ticks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name
            );
            EXECUTE format(
                'ALTER TABLE tickagg.ticks ATTACH PARTITION tickagg.%I FOR VALUES FROM (%L) TO (%L)',
                v_name, v_day::timestamptz, (v_day + 1)::timestamptz
            );
            v_created := v_created || v_name;
        EXCEPTION WHEN duplicate_table THEN
            NULL;
        END;
    END LOOP;
    RETURN v_created;
END
$$;

COMMENT ON FUNCTION tickagg.ticks_ensure_partitions(timestamptz, timestamptz) IS
'Create the missing daily ticks partitions (ticks_pYYYYMMDD) for the UTC days from p_from to p_to, without blocking readers, and hold the existing ones against retention until commit; returns the names created.';
