-- Keys of the tasks that are due at p_now, in any environment: idle tasks whose
-- time has come, idle rollups with pending invalidations (unless backing off
-- after a failure) and running tasks whose lease has expired.
CREATE OR REPLACE FUNCTION tickagg.due_task_keys(p_now timestamptz)
RETURNS TABLE (canonical_symbol text, timeframe text, task_kind text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT s.canonical_symbol, s.timeframe, s.task_kind
    FROM tickagg.data_agg_state AS s
    WHERE s.enabled AND s.status = 'idle' AND s.next_run_at <= p_now
    UNION
    SELECT s.canonical_symbol, s.timeframe, s.task_kind
    FROM (SELECT DISTINCT i.canonical_symbol, i.timeframe FROM tickagg.agg_invalidations AS i) AS i
    INNER JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = i.canonical_symbol AND s.timeframe = i.timeframe AND s.task_kind = 'rollup'
    WHERE s.enabled AND s.status = 'idle' AND s.transient_fail_streak = 0 AND s.hard_fail_streak = 0
    UNION
    SELECT s.canonical_symbol, s.timeframe, s.task_kind
    FROM tickagg.data_agg_state AS s
    WHERE s.enabled AND s.status = 'running' AND s.lease_expires_at < p_now
$$;

COMMENT ON FUNCTION tickagg.due_task_keys(timestamptz) IS
'Keys of tasks due at p_now: scheduled time reached, pending invalidations, or an expired lease.';
