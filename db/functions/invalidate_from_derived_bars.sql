-- Statement trigger on derived_data_bars: a changed bucket dirties the same span
-- of the timeframe built from it, which is how a correction cascades up to 1w.
CREATE OR REPLACE FUNCTION tickagg.invalidate_from_derived_bars()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
AS $$
DECLARE
    v_recorded bigint;
BEGIN
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT c.canonical_symbol, t.timeframe, d.span
    FROM (
        SELECT
            r.canonical_symbol,
            r.timeframe,
            range_agg(tstzrange(r.ts_utc, r.bucket_end)) AS spans
        FROM changed_rows AS r
        GROUP BY r.canonical_symbol, r.timeframe
    ) AS c
    INNER JOIN tickagg.timeframes AS t ON t.source_timeframe = c.timeframe
    INNER JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
    CROSS JOIN LATERAL unnest(c.spans) AS d (span);
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    IF v_recorded > 0 THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.invalidate_from_derived_bars() IS
'Trigger: record dirty bucket spans of changed derived bars for the next timeframe up and notify runners.';
