-- Whether any minute of p_span belongs to a bucket of the calendar, at any
-- timeframe: whether it overlaps the window of a session, trading or not
-- (calendar_sessions; a non-trading date's bars still get buckets, expecting no
-- candles, like a forex Saturday's). Every level cuts its buckets from those
-- windows only (aggregate_buckets), so minutes outside all of them, a US stock's
-- after-hours and overnight bars, change no bar: a write of them behind a
-- rollup's cursor needs no dirty span, and each one cost a run that wrote
-- nothing (2,500 a live minute for a US market in bench_live_scale).
--
-- PL/pgSQL so its plan is cached per session, as bucket_bounds is.
CREATE OR REPLACE FUNCTION tickagg.calendar_span_bucketed(
    p_calendar_code text,
    p_span tstzrange
)
RETURNS boolean
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM tickagg.calendar_sessions(p_calendar_code, lower(p_span), upper(p_span))
    );
END
$$;

COMMENT ON FUNCTION tickagg.calendar_span_bucketed(text, tstzrange) IS
'Whether any minute of a span lies in a session window of the calendar (trading or not), so in a bucket of every timeframe.';
