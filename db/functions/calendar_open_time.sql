-- The open market time of a calendar inside [p_from, p_to) as one multirange:
-- trading sessions clipped to the window, adjacent sessions merged (forex and
-- crypto days run into each other), closed time (nights, weekends, holidays,
-- after an early close) left out.
CREATE OR REPLACE FUNCTION tickagg.calendar_open_time(
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS tstzmultirange
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT coalesce(
        range_agg(tstzrange(greatest(s.open_utc, p_from), least(s.close_utc, p_to))),
        '{}'::tstzmultirange
    )
    FROM tickagg.calendar_sessions(p_calendar_code, p_from, p_to) AS s
    WHERE s.is_trading AND greatest(s.open_utc, p_from) < least(s.close_utc, p_to)
$$;

COMMENT ON FUNCTION tickagg.calendar_open_time(text, timestamptz, timestamptz) IS
'Open market time of a calendar within [p_from, p_to) as a multirange of merged trading sessions.';
