-- Recompute a calendar's sessions in calendar_days for the given trading dates
-- (default: its whole window), writing only the rows that differ, so that a
-- refresh with nothing changed writes nothing. Called by the triggers on
-- market_calendars and market_holidays, and by every migrate (after a time-zone
-- rule change, the stored UTC times follow). Returns the rows written or removed.
CREATE OR REPLACE FUNCTION tickagg.calendar_days_refresh(
    p_calendar_code text,
    p_dates daterange DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_dates daterange := coalesce(p_dates, tickagg.calendar_days_window()) * tickagg.calendar_days_window();
    v_changed bigint;
BEGIN
    IF isempty(v_dates) THEN
        RETURN 0;
    END IF;
    WITH computed AS MATERIALIZED (
        SELECT s.*
        FROM tickagg.market_calendars AS c
        -- the dates' sessions lie within two days of them in the calendar's local
        -- time (a CHECK on market_calendars), whatever its distance from UTC
        CROSS JOIN LATERAL tickagg.calendar_days_compute(
            p_calendar_code,
            (lower(v_dates) - 2)::timestamp AT TIME ZONE c.time_zone,
            (upper(v_dates) + 2)::timestamp AT TIME ZONE c.time_zone
        ) AS s
        WHERE c.calendar_code = p_calendar_code AND s.trading_date <@ v_dates
    ),
    written AS (
        INSERT INTO tickagg.calendar_days (
            calendar_code, trading_date, open_utc, close_utc, is_trading, week_open_utc, week_close_utc
        )
        SELECT p_calendar_code, c.trading_date, c.open_utc, c.close_utc, c.is_trading, c.week_open_utc, c.week_close_utc
        FROM computed AS c
        -- rows already right are not even locked: a migrate with nothing to do
        -- touches none of the ~117,000
        WHERE NOT EXISTS (
            SELECT 1
            FROM tickagg.calendar_days AS k
            WHERE
                k.calendar_code = p_calendar_code
                AND k.trading_date = c.trading_date
                AND (k.open_utc, k.close_utc, k.is_trading, k.week_open_utc, k.week_close_utc)
                IS NOT DISTINCT FROM (c.open_utc, c.close_utc, c.is_trading, c.week_open_utc, c.week_close_utc)
        )
        ON CONFLICT (calendar_code, trading_date) DO UPDATE SET
            open_utc = excluded.open_utc,
            close_utc = excluded.close_utc,
            is_trading = excluded.is_trading,
            week_open_utc = excluded.week_open_utc,
            week_close_utc = excluded.week_close_utc
        RETURNING 1
    ),
    removed AS (
        DELETE FROM tickagg.calendar_days AS d
        WHERE
            d.calendar_code = p_calendar_code
            AND d.trading_date <@ v_dates
            AND NOT EXISTS (SELECT 1 FROM computed AS c WHERE c.trading_date = d.trading_date)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed) INTO v_changed;
    RETURN v_changed;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_refresh(text, daterange) IS
'Recompute a calendar''s stored sessions for some trading dates (default: all kept), writing only rows that differ.';
