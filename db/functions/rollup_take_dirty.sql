-- A rollup task's own run takes its dirty spans out of agg_invalidations and
-- gets the buckets to re-materialise (rollup_dirty_buckets); spans behind the
-- cursor past the run's budget are queued again (more_dirty). Spans ahead of the
-- cursor are dropped: the run's catch-up materialises those buckets anyway.
CREATE OR REPLACE FUNCTION tickagg.rollup_take_dirty(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_step interval,
    p_agg_start timestamptz,
    p_cursor timestamptz,
    p_max_windows integer
)
RETURNS TABLE (dirty_buckets tstzmultirange, more_dirty boolean, spans_taken integer)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
-- a few index lookups with one good plan; cached instead of planned per call
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_dirty tstzmultirange;
    v_requeue tstzmultirange;
BEGIN
    -- Spans taken here cover data this transaction's later statements see; any
    -- committed after this statement stay queued for the next run.
    WITH taken AS (
        DELETE FROM tickagg.agg_invalidations AS i
        WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = p_timeframe
        RETURNING i.dirty_range
    )
    SELECT coalesce(range_agg(t.dirty_range), '{}'::tstzmultirange), count(*)
    INTO v_dirty, spans_taken
    FROM taken AS t;

    SELECT b.dirty_buckets, b.requeue INTO dirty_buckets, v_requeue
    FROM tickagg.rollup_dirty_buckets(
        p_canonical_symbol, p_timeframe, p_calendar_code, p_step, p_agg_start, p_cursor, p_max_windows, v_dirty
    ) AS b;
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT p_canonical_symbol, p_timeframe, d.span FROM unnest(v_requeue) AS d (span);
    more_dirty := NOT isempty(v_requeue);
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION tickagg.rollup_take_dirty(text, text, text, interval, timestamptz, timestamptz, integer) IS
'Consume the invalidations of a rollup task for its own run: the whole buckets behind its cursor to redo, the rest re-queued.';
