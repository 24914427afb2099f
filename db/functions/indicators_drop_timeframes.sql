-- A timeframe left out of indicator_timeframes costs nothing: its indicators
-- tasks, their checkpoints, queued rewinds and stored values go (a disabled task
-- would still collect a rewind row per corrected bar, and stale values would
-- outlive the bars they were computed from). Widening the setting again makes
-- sync create fresh tasks that compute the series from its first bar.
-- Returns the number of tasks removed.
CREATE OR REPLACE FUNCTION tickagg.indicators_drop_timeframes()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_kept text[] := tickagg.indicator_timeframes();
    v_removed bigint;
BEGIN
    WITH removed AS (
        DELETE FROM tickagg.data_agg_state AS s
        WHERE s.task_kind = 'indicators' AND s.timeframe <> ALL(v_kept)
        RETURNING 1
    )
    SELECT count(*) INTO v_removed FROM removed;
    DELETE FROM tickagg.indicator_rewinds AS w WHERE w.timeframe <> ALL(v_kept);
    DELETE FROM tickagg.indicator_checkpoints AS c WHERE c.timeframe <> ALL(v_kept);
    DELETE FROM tickagg.derived_bar_indicators AS i WHERE i.timeframe <> ALL(v_kept);
    RETURN v_removed;
END
$$;

COMMENT ON FUNCTION tickagg.indicators_drop_timeframes() IS
'Remove the indicators tasks, checkpoints, rewinds and values of timeframes outside indicator_timeframes; returns the tasks removed.';
