-- The sessions (one per trading date, trading or not) whose nominal window
-- overlaps [p_from, p_to), computed from the calendar: the one definition of a
-- session. Non-trading dates are returned with is_trading = false so bars that
-- arrive on them still have a bucket; they just expect no candles. Read through
-- calendar_sessions, which serves most dates from calendar_days.
CREATE OR REPLACE FUNCTION tickagg.calendar_days_compute(
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (
    trading_date date,
    open_utc timestamptz,
    close_utc timestamptz,
    is_trading boolean,
    week_open_utc timestamptz,
    week_close_utc timestamptz
)
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
ROWS 10
SET search_path = pg_catalog, tickagg, pg_temp
-- one cached plan: calendar_sessions calls this for a few days at a time
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT
        d.trading_date,
        (d.trading_date + c.session_open_offset) AT TIME ZONE c.time_zone,
        coalesce(
            (d.trading_date + h.early_close) AT TIME ZONE c.time_zone,
            (d.trading_date + c.session_close_offset) AT TIME ZONE c.time_zone
        ),
        extract(ISODOW FROM d.trading_date)::integer = ANY (c.trading_isodows)
        AND (h.holiday_date IS NULL OR h.early_close IS NOT NULL),
        (d.trading_date - extract(ISODOW FROM d.trading_date)::integer + 1 + c.session_open_offset) AT TIME ZONE c.time_zone,
        (d.trading_date - extract(ISODOW FROM d.trading_date)::integer + 8 + c.session_open_offset) AT TIME ZONE c.time_zone
    FROM tickagg.market_calendars AS c
    CROSS JOIN LATERAL (
        -- a session opens at most a day before its date and closes at most two
        -- days after it (a CHECK on market_calendars)
        SELECT g::date AS trading_date
        FROM generate_series(
            (p_from AT TIME ZONE c.time_zone)::date - 2,
            (p_to AT TIME ZONE c.time_zone)::date + 2,
            interval '1 day'
        ) AS g
    ) AS d
    LEFT JOIN tickagg.market_holidays AS h
        ON h.calendar_code = c.calendar_code AND h.holiday_date = d.trading_date
    WHERE c.calendar_code = p_calendar_code
      AND (d.trading_date + c.session_open_offset) AT TIME ZONE c.time_zone < p_to
      AND coalesce(
            (d.trading_date + h.early_close) AT TIME ZONE c.time_zone,
            (d.trading_date + c.session_close_offset) AT TIME ZONE c.time_zone
      ) > p_from
    ORDER BY d.trading_date;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_compute(text, timestamptz, timestamptz) IS
'Trading sessions of a calendar overlapping [p_from, p_to), computed from its offsets, time zone and holidays.';
