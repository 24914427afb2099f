-- The buckets of a rollup task to re-materialise for its dirty spans: the parts
-- behind its cursor and not before its first bucket, widened to whole buckets,
-- at most p_max_windows buckets' worth from the first. What lies behind the
-- cursor past that budget comes back as requeue (the caller queues it again);
-- what lies ahead of the cursor is the caller's to keep or drop.
CREATE OR REPLACE FUNCTION tickagg.rollup_dirty_buckets(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_step interval,
    p_agg_start timestamptz,
    p_cursor timestamptz,
    p_max_windows integer,
    p_dirty tstzmultirange
)
RETURNS TABLE (dirty_buckets tstzmultirange, requeue tstzmultirange)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_dirty tstzmultirange := p_dirty * tstzmultirange(tstzrange(p_agg_start, p_cursor));
    v_span tstzrange;
    v_bucket tstzrange;
BEGIN
    -- The first bucket lies within 15 days after agg_start (agg_bootstrap_cursor),
    -- so later spans need no bucket lookup for it.
    IF lower(v_dirty) < p_agg_start + interval '15 days' THEN
        v_dirty := v_dirty * tstzmultirange(tstzrange(
            tickagg.rollup_first_bucket(p_canonical_symbol, p_timeframe, p_calendar_code, p_agg_start), NULL
        ));
    END IF;
    requeue := '{}'::tstzmultirange;
    IF NOT isempty(v_dirty) THEN
        requeue := v_dirty * tstzmultirange(tstzrange(lower(v_dirty) + p_max_windows * p_step, NULL));
        v_dirty := v_dirty - requeue;
    END IF;

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
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION tickagg.rollup_dirty_buckets(
    text, text, text, interval, timestamptz, timestamptz, integer, tstzmultirange
) IS
'Whole buckets behind a rollup task''s cursor to redo for its dirty spans (within a budget), and the spans to queue again.';
