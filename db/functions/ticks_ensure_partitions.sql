-- Create the missing daily partitions ticks_pYYYYMMDD covering [p_from, p_to]
-- (UTC days). Returns the names created. Two sessions creating the same day
-- serialise on an advisory lock; the second then finds the first's table (an
-- advisory lock does not refresh this session's catalog cache, so the check
-- after it can miss a table committed meanwhile: CREATE reports it as a
-- duplicate, which counts as found).
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
        CONTINUE WHEN to_regclass('tickagg.' || v_name) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(hashtext('tickagg.ticks_partitions'));
        CONTINUE WHEN to_regclass('tickagg.' || v_name) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE tickagg.%I PARTITION OF tickagg.ticks FOR VALUES FROM (%L) TO (%L)',
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
'Create the missing daily ticks partitions (ticks_pYYYYMMDD) for the UTC days from p_from to p_to; returns their names.';
