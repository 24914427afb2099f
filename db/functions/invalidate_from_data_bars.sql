-- Statement trigger on data_bars: the minutes a statement wrote or deleted become
-- dirty ranges for the timeframes rolled up from them, per symbol, coalesced so a
-- bulk backfill costs a handful of rows. Wakes runners through NOTIFY.
CREATE OR REPLACE FUNCTION tickagg.invalidate_from_data_bars()
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
            range_agg(tstzrange(r.ts_utc, r.ts_utc + interval '1 minute')) AS spans
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

COMMENT ON FUNCTION tickagg.invalidate_from_data_bars() IS
'Trigger: record dirty 1-minute ranges per symbol for the dependent rollup tasks and notify runners.';
