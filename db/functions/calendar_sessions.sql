-- Sessions (one per trading date, trading or not) whose nominal window overlaps
-- [p_from, p_to). Non-trading dates are returned with is_trading = false so bars
-- that arrive on them still have a bucket; they just expect no candles.
CREATE OR REPLACE FUNCTION tickagg.calendar_sessions(
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
-- a typical call spans days, not years; keeps the planner's estimates sane
ROWS 10
SET search_path = pg_catalog, tickagg, pg_temp
-- PL/pgSQL, with one cached plan whatever the caller's plan_cache_mode, because
-- the late-data and live paths call this a dozen times per run: as a SQL
-- function its query was planned on every call. (Inlining it instead lost the
-- row estimate above, and real-time view queries got costly enough to JIT.)
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

COMMENT ON FUNCTION tickagg.calendar_sessions(text, timestamptz, timestamptz) IS
'Trading sessions of a calendar overlapping [p_from, p_to): open/close in UTC, whether the date trades, and its trading week.';
