-- Add or change a holiday (p_early_close NULL: closed all day) or an early close
-- (the local wall-clock close time) of a calendar. The runner role may call it;
-- it cannot write market_holidays itself. A change alters the buckets and the
-- expected candles of that trading date: the trigger on market_holidays
-- refreshes its session (calendar_days_refresh), which dirties the date for
-- every rollup task of the calendar's symbols, so bars already built are
-- re-derived by the next runs (the late-data path; only behind each cursor).
CREATE OR REPLACE FUNCTION tickagg.calendar_set_holiday(
    p_calendar_code text,
    p_holiday_date date,
    p_early_close time DEFAULT NULL,
    p_description text DEFAULT ''
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_calendar tickagg.market_calendars%ROWTYPE;
    v_changed boolean;
    v_dirtied bigint := 0;
BEGIN
    SELECT * INTO v_calendar FROM tickagg.market_calendars AS c WHERE c.calendar_code = p_calendar_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown calendar %', p_calendar_code
            USING ERRCODE = 'TK003', HINT = 'See tickagg.calendars for the known codes.';
    END IF;
    IF p_holiday_date IS NULL THEN
        RAISE EXCEPTION 'holiday date is NULL' USING ERRCODE = 'TK004';
    END IF;
    IF p_early_close IS NOT NULL AND (
        p_early_close::interval <= v_calendar.session_open_offset
        OR p_early_close::interval >= v_calendar.session_close_offset
    ) THEN
        RAISE EXCEPTION 'early close % is not inside the session % - % of %',
            p_early_close, v_calendar.session_open_offset, v_calendar.session_close_offset, p_calendar_code
            USING ERRCODE = 'TK004', HINT = 'An early close is the local time the shortened session ends.';
    END IF;

    INSERT INTO tickagg.market_holidays AS h (calendar_code, holiday_date, early_close, description)
    VALUES (p_calendar_code, p_holiday_date, p_early_close, coalesce(p_description, ''))
    ON CONFLICT (calendar_code, holiday_date) DO UPDATE SET
        early_close = excluded.early_close, description = excluded.description
    WHERE (h.early_close, h.description) IS DISTINCT FROM (excluded.early_close, excluded.description)
    RETURNING true INTO v_changed;
    IF v_changed THEN
        SELECT count(*) INTO v_dirtied
        FROM tickagg.calendar_rollups_past(p_calendar_code, (p_holiday_date - 2)::timestamp AT TIME ZONE 'UTC');
    END IF;

    RETURN jsonb_build_object(
        'calendar_code', p_calendar_code,
        'holiday_date', p_holiday_date,
        'kind', CASE WHEN p_early_close IS NULL THEN 'holiday' ELSE 'early_close' END,
        'changed', coalesce(v_changed, false),
        'tasks_dirtied', v_dirtied
    );
END
$$;

COMMENT ON FUNCTION tickagg.calendar_set_holiday(text, date, time, text) IS
'Add or update a holiday (p_early_close NULL) or an early close of a calendar; a change dirties that date for the rollups of the calendar''s symbols.';
