-- What `tickagg run --until-idle` shows on a terminal once a second: per task kind,
-- the tasks of the environment due and running, and the slowest cursor among them
-- (of the kinds whose cursor is a time). It reads the task table once and never
-- the bar tables, so watching a catch-up costs little beside the catch-up.
CREATE OR REPLACE FUNCTION tickagg.run_progress(p_env text)
RETURNS TABLE (
    task_kind text,
    due bigint,
    running bigint,
    slowest_cursor timestamptz,
    slowest_timeframe text
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    WITH tasks AS MATERIALIZED (
        SELECT
            s.task_kind,
            s.timeframe,
            s.last_agg_bar_ts_utc AS cursor_ts,
            s.status = 'idle' AND s.next_run_at <= now() AS is_due,
            s.status = 'running' AS is_running
        FROM tickagg.data_agg_state AS s
        INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
        WHERE s.enabled AND CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
    ),

    per_kind AS (
        SELECT
            t.task_kind,
            count(*) FILTER (WHERE t.is_due) AS due,
            count(*) FILTER (WHERE t.is_running) AS running
        FROM tasks AS t
        GROUP BY t.task_kind
    ),

    slowest AS (
        SELECT DISTINCT ON (t.task_kind)
            t.task_kind,
            t.cursor_ts,
            t.timeframe
        FROM tasks AS t
        WHERE (t.is_due OR t.is_running) AND t.task_kind IN ('rollup', 'indicators', 'ticks_1m')
        ORDER BY t.task_kind ASC, t.cursor_ts ASC
    )

    SELECT k.task_kind, k.due, k.running, w.cursor_ts, w.timeframe
    FROM per_kind AS k
    LEFT JOIN slowest AS w ON w.task_kind = k.task_kind
    ORDER BY k.task_kind
$$;

COMMENT ON FUNCTION tickagg.run_progress(text) IS
'Per task kind of the environment: tasks due, running, and the slowest time cursor among them (run --until-idle progress).';
