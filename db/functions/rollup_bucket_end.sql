-- When the bucket a rollup task waits on at p_cursor can close: the end of the
-- bucket of p_timeframe containing p_cursor, or, when p_cursor lies in closed
-- market time (overnight, a weekend, a holiday), of the first bucket of the next
-- trading session. So a 1d task waits for the end of the next trading day, a 1w
-- task for the end of the trading week, and nothing comes due while a market is
-- closed. agg_finish stores it as data_agg_state.pending_bucket_end, which the
-- write paths compare against. NULL when no trading session starts within 15
-- days (a task then waits for its source, see agg_finish).
CREATE OR REPLACE FUNCTION tickagg.rollup_bucket_end(
    p_calendar_code text,
    p_timeframe text,
    p_cursor timestamptz
)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_open timestamptz;
BEGIN
    SELECT s.open_utc INTO v_open
    FROM tickagg.calendar_sessions(p_calendar_code, p_cursor, p_cursor + interval '15 days') AS s
    WHERE s.is_trading AND s.close_utc > p_cursor
    ORDER BY s.open_utc
    LIMIT 1;
    IF v_open IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN upper(tickagg.bucket_bounds(p_calendar_code, p_timeframe, greatest(p_cursor, v_open)));
END
$$;

COMMENT ON FUNCTION tickagg.rollup_bucket_end(text, text, timestamptz) IS
'End of the bucket a rollup task at cursor p_cursor waits on, closed market time skipped (NULL: no session within 15 days).';
