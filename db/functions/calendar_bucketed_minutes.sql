-- The minutes of [p_from, p_to) that belong to a bucket of the calendar, at any
-- timeframe: the windows of its sessions, trading or not (calendar_sessions; a
-- non-trading date's bars still get buckets, expecting no candles, like a forex
-- Saturday's or a US Sunday's). Every level cuts its buckets from those windows
-- only (aggregate_buckets), so a minute outside them, a US stock's after-hours
-- or overnight bar, changes no bar: invalidate_from_data_bars records no dirty
-- span for it, where each one cost a run that wrote nothing (2,500 a live minute
-- for a US market in bench_live_scale).
--
-- PL/pgSQL so its plan is cached per session, as bucket_bounds is: the trigger
-- calls it once per symbol a statement records.
CREATE OR REPLACE FUNCTION tickagg.calendar_bucketed_minutes(
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS tstzmultirange
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (
        SELECT coalesce(range_agg(tstzrange(s.open_utc, s.close_utc)), '{}'::tstzmultirange)
        FROM tickagg.calendar_sessions(p_calendar_code, p_from, p_to) AS s
    );
END
$$;

COMMENT ON FUNCTION tickagg.calendar_bucketed_minutes(text, timestamptz, timestamptz) IS
'The session windows (trading or not) of a calendar overlapping [p_from, p_to): the minutes there that some bucket holds.';
