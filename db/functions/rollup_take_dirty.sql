-- Take the dirty spans of a rollup task out of agg_invalidations, add p_also
-- (the buckets a cascade redoes in the timeframe below), and return the buckets
-- to re-materialise: those behind the cursor and not before the task's first
-- bucket, widened to whole buckets, at most p_max_windows buckets' worth from
-- the first. Dirty spans behind the cursor past that budget are queued again
-- (more_dirty). Spans ahead of the cursor are dropped when the task's own run
-- takes them (its catch-up materialises those buckets anyway), and queued again
-- when a cascade from below takes them (p_keep_ahead), so they still wake it.
CREATE OR REPLACE FUNCTION tickagg.rollup_take_dirty(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_step interval,
    p_agg_start timestamptz,
    p_cursor timestamptz,
    p_max_windows integer,
    p_keep_ahead boolean,
    p_also tstzmultirange DEFAULT '{}'
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
    v_ahead tstzmultirange := '{}'::tstzmultirange;
    v_later tstzmultirange := '{}'::tstzmultirange;
    v_span tstzrange;
    v_bucket tstzrange;
BEGIN
    -- Spans taken here cover data this transaction's later statements see; any
    -- committed after this statement stay queued for the next run.
    WITH taken AS (
        DELETE FROM tickagg.agg_invalidations AS i
        WHERE
            i.canonical_symbol = p_canonical_symbol
            AND i.timeframe = p_timeframe
            AND (NOT p_keep_ahead OR lower(i.dirty_range) < p_cursor)
        RETURNING i.dirty_range
    )
    SELECT coalesce(range_agg(t.dirty_range), '{}'::tstzmultirange) + p_also, count(*)
    INTO v_dirty, spans_taken
    FROM taken AS t;

    IF p_keep_ahead THEN
        v_ahead := v_dirty * tstzmultirange(tstzrange(p_cursor, NULL));
    END IF;
    v_dirty := v_dirty * tstzmultirange(tstzrange(p_agg_start, p_cursor));
    -- The first bucket lies within 15 days after agg_start (agg_bootstrap_cursor),
    -- so later spans need no bucket lookup for it.
    IF lower(v_dirty) < p_agg_start + interval '15 days' THEN
        v_dirty := v_dirty * tstzmultirange(tstzrange(
            tickagg.rollup_first_bucket(p_canonical_symbol, p_timeframe, p_calendar_code, p_agg_start), NULL
        ));
    END IF;
    IF NOT isempty(v_dirty) THEN
        v_later := v_dirty * tstzmultirange(tstzrange(lower(v_dirty) + p_max_windows * p_step, NULL));
        v_dirty := v_dirty - v_later;
    END IF;
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT p_canonical_symbol, p_timeframe, d.span FROM unnest(v_later + v_ahead) AS d (span);

    -- Widen each span to whole buckets (an end in closed market time is a
    -- boundary already); one lookup when the span lies in one bucket, as a late
    -- bar's does.
    dirty_buckets := '{}'::tstzmultirange;
    FOREACH v_span IN ARRAY ARRAY(SELECT d.span FROM unnest(v_dirty) AS d (span)) LOOP
        v_bucket := tickagg.bucket_bounds(p_calendar_code, p_timeframe, lower(v_span));
        v_span := tstzrange(coalesce(lower(v_bucket), lower(v_span)), greatest(upper(v_bucket), upper(v_span)));
        IF upper(v_bucket) IS DISTINCT FROM upper(v_span) THEN
            v_span := tstzrange(
                lower(v_span),
                coalesce(
                    upper(tickagg.bucket_bounds(p_calendar_code, p_timeframe, upper(v_span) - interval '1 microsecond')),
                    upper(v_span)
                )
            );
        END IF;
        dirty_buckets := dirty_buckets + tstzmultirange(v_span);
    END LOOP;
    more_dirty := NOT isempty(v_later);
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION tickagg.rollup_take_dirty(
    text, text, text, interval, timestamptz, timestamptz, integer, boolean, tstzmultirange
) IS
'Consume the invalidations of a rollup task: the whole buckets behind its cursor to redo (within a budget), the rest re-queued.';
