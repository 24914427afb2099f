-- The first cursor of a task: the first bucket boundary at or after its
-- agg_start_utc (the default_agg_start setting when the task does not exist yet).
-- Deterministic: depends on the calendar, never on what data exists.
CREATE OR REPLACE FUNCTION tickagg.agg_bootstrap_cursor(
    p_canonical_symbol text,
    p_timeframe text,
    p_agg_start timestamptz DEFAULT NULL
)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_calendar_code text;
    v_start timestamptz;
    v_cursor timestamptz;
BEGIN
    SELECT r.calendar_code INTO v_calendar_code
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', p_canonical_symbol
            USING ERRCODE = 'TK002', HINT = 'Register it: tickagg symbols add SYMBOL --calendar CODE.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe) THEN
        RAISE EXCEPTION 'unknown timeframe %', p_timeframe
            USING ERRCODE = 'TK003', HINT = 'Timeframes are listed in tickagg.timeframes.';
    END IF;

    v_start := coalesce(
        p_agg_start,
        (
            SELECT s.agg_start_utc FROM tickagg.data_agg_state AS s
            WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = 'rollup'
        ),
        tickagg.setting('default_agg_start')::timestamptz
    );

    -- The earliest bucket start at or after v_start among the sessions of the next
    -- 15 days, computed per session (catch-up asks for it while its cursor is
    -- within those 15 days, through rollup_first_bucket).
    SELECT min(c.bucket_start) INTO v_cursor
    FROM tickagg.timeframes AS t
    CROSS JOIN LATERAL tickagg.calendar_sessions(v_calendar_code, v_start, v_start + interval '15 days') AS s
    CROSS JOIN LATERAL (SELECT date_bin(t.step, v_start, s.open_utc) AS at_start) AS g
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN t.bucket_kind = 'day' THEN CASE WHEN s.open_utc >= v_start THEN s.open_utc END
            -- a week opens with its Monday session, which is among these when it counts
            WHEN t.bucket_kind = 'week' THEN CASE WHEN s.week_open_utc >= v_start THEN s.week_open_utc END
            WHEN s.open_utc >= v_start THEN s.open_utc
            WHEN g.at_start = v_start THEN v_start
            WHEN g.at_start + t.step < s.close_utc THEN g.at_start + t.step
        END AS bucket_start
    ) AS c
    WHERE t.timeframe = p_timeframe AND c.bucket_start < v_start + interval '15 days';
    RETURN coalesce(v_cursor, v_start);
END
$$;

COMMENT ON FUNCTION tickagg.agg_bootstrap_cursor(text, text, timestamptz) IS
'First bucket boundary at or after the task''s agg_start_utc: where a new task''s cursor starts.';
