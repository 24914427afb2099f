-- Sessions (one per trading date, trading or not) whose nominal window overlaps
-- [p_from, p_to), as calendar_days_compute defines them. Non-trading dates are
-- returned with is_trading = false so bars that arrive on them still have a
-- bucket; they just expect no candles.
--
-- Read from calendar_days inside its window: a lookup there costs 8 microseconds,
-- computing 22, and a late bar's run asks for sessions about 17 times (bucket
-- bounds and the sessions of every level it redoes). Outside the window the
-- sessions are computed.
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
    -- Stored sessions serve ranges a week inside the window, whose sessions (and
    -- those of the days around them) are all stored.
    IF
        p_from >= (lower(tickagg.calendar_days_window()) + 7)::timestamp AT TIME ZONE 'UTC'
        AND p_to <= (upper(tickagg.calendar_days_window()) - 7)::timestamp AT TIME ZONE 'UTC'
    THEN
        RETURN QUERY
        SELECT d.trading_date, d.open_utc, d.close_utc, d.is_trading, d.week_open_utc, d.week_close_utc
        FROM tickagg.calendar_days AS d
        WHERE
            d.calendar_code = p_calendar_code
            -- A session lasts at most a day (a CHECK on market_calendars), a few
            -- hours more across a clock change: one that overlaps the range opened
            -- less than two days before it, whatever the calendar's time zone.
            AND d.open_utc > p_from - interval '2 days'
            AND d.open_utc < p_to
            AND d.close_utc > p_from
        ORDER BY d.trading_date;
    ELSE
        RETURN QUERY
        SELECT s.trading_date, s.open_utc, s.close_utc, s.is_trading, s.week_open_utc, s.week_close_utc
        FROM tickagg.calendar_days_compute(p_calendar_code, p_from, p_to) AS s;
    END IF;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_sessions(text, timestamptz, timestamptz) IS
'Trading sessions of a calendar overlapping [p_from, p_to): open/close in UTC, whether the date trades, and its trading week.';
