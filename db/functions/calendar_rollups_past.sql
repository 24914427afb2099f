-- The rollup tasks of a calendar's symbols whose cursor has passed p_since: the
-- ones with bars built over a session changed at or after it, which must be
-- re-derived (calendar_days_refresh dirties them, calendar_set_holiday counts them).
CREATE OR REPLACE FUNCTION tickagg.calendar_rollups_past(
    p_calendar_code text,
    p_since timestamptz
)
RETURNS TABLE (canonical_symbol text, timeframe text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT s.canonical_symbol, s.timeframe
    FROM tickagg.data_agg_state AS s
    INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
    WHERE r.calendar_code = p_calendar_code AND s.task_kind = 'rollup' AND s.last_agg_bar_ts_utc > p_since
$$;

COMMENT ON FUNCTION tickagg.calendar_rollups_past(text, timestamptz) IS
'Rollup tasks of a calendar''s symbols whose cursor has passed a time (their bars over later session changes must be re-derived).';
