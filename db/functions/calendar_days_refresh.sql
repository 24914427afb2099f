-- Recompute a calendar's sessions in calendar_days for the given trading dates
-- (default: its whole window), writing only the rows that differ, so that a
-- refresh with nothing changed writes nothing. Called by the triggers on
-- market_calendars and market_holidays, and by every migrate (after a time-zone
-- rule change, the stored UTC times follow). Returns the rows written or removed.
-- A changed session changes the buckets and expected candles of the calendar's
-- symbols: their bars already built over the changed dates are re-derived (a
-- dirty span per rollup task, the late-data path, only behind its cursor), and
-- the stored end of the bucket at a task's cursor (pending_bucket_end) is
-- recomputed when the change lies around it, bringing the next run forward when
-- it now closes earlier (a removed holiday). So a holiday added, changed or
-- removed by any path (calendar_set_holiday, an import, a direct write), an
-- edited calendar or a time-zone rule change all correct the bars by themselves.
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
    v_first date;
    v_last date;
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
        RETURNING trading_date
    ),
    removed AS (
        DELETE FROM tickagg.calendar_days AS d
        WHERE
            d.calendar_code = p_calendar_code
            AND d.trading_date <@ v_dates
            AND NOT EXISTS (SELECT 1 FROM computed AS c WHERE c.trading_date = d.trading_date)
        RETURNING d.trading_date
    ),
    changed AS (
        SELECT w.trading_date FROM written AS w
        UNION ALL
        SELECT r.trading_date FROM removed AS r
    )
    SELECT count(*), min(c.trading_date), max(c.trading_date) INTO v_changed, v_first, v_last
    FROM changed AS c;

    IF v_changed > 0 THEN
        -- a date's session lies within two days of it
        INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
        SELECT
            t.canonical_symbol,
            t.timeframe,
            tstzrange((v_first - 2)::timestamp AT TIME ZONE 'UTC', (v_last + 3)::timestamp AT TIME ZONE 'UTC')
        FROM tickagg.calendar_rollups_past(p_calendar_code, (v_first - 2)::timestamp AT TIME ZONE 'UTC') AS t;
        IF FOUND THEN
            PERFORM pg_notify('tickagg_work', '');
        END IF;
        -- tasks whose cursor is past
        -- the changed dates, or whose bucket closes before them, are unaffected
        WITH affected AS (
            SELECT
                s.canonical_symbol,
                s.timeframe,
                s.task_kind,
                tickagg.rollup_bucket_end(p_calendar_code, s.timeframe, s.last_agg_bar_ts_utc) AS bucket_end
            FROM tickagg.data_agg_state AS s
            INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
            WHERE
                r.calendar_code = p_calendar_code AND s.task_kind = 'rollup'
                AND s.last_agg_bar_ts_utc < (v_last + 3)::timestamp AT TIME ZONE 'UTC'
                AND s.pending_bucket_end >= (v_first - 3)::timestamp AT TIME ZONE 'UTC'
        )
        UPDATE tickagg.data_agg_state AS s SET
            pending_bucket_end = a.bucket_end,
            next_run_at = least(s.next_run_at, a.bucket_end + s.aggregation_delay)
        FROM affected AS a
        WHERE
            s.canonical_symbol = a.canonical_symbol AND s.timeframe = a.timeframe AND s.task_kind = a.task_kind
            AND s.pending_bucket_end IS DISTINCT FROM a.bucket_end;
    END IF;
    RETURN v_changed;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_refresh(text, daterange) IS
'Recompute a calendar''s stored sessions for some trading dates (default: all kept), writing only rows that differ.';
