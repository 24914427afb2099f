-- Tasks per kind and timeframe, for `tickagg status`: a market of thousands of
-- symbols read at a glance (one row per level, not one per task); the tasks that
-- need a look are listed apart (task_status filtered).
CREATE OR REPLACE VIEW tickagg.task_summary AS
SELECT
    s.task_kind,
    s.timeframe,
    count(*) AS tasks,
    count(*) FILTER (WHERE s.enabled) AS enabled,
    count(*) FILTER (WHERE s.disabled_by_user) AS disabled_by_user,
    count(*) FILTER (WHERE s.status = 'running') AS running,
    count(*) FILTER (WHERE s.status = 'hard_failed') AS hard_failed,
    count(*) FILTER (WHERE s.status <> 'hard_failed' AND (s.hard_fail_streak > 0 OR s.transient_fail_streak > 0))
        AS failing,
    min(s.last_agg_bar_ts_utc) FILTER (WHERE s.enabled) AS oldest_cursor,
    max(now() - s.last_agg_bar_ts_utc) FILTER (WHERE s.enabled) AS max_lag,
    min(s.next_run_at) FILTER (WHERE s.enabled AND s.status = 'idle') AS next_run_at,
    sum(s.runs_total) AS runs_total,
    sum(s.bars_written_total) AS bars_written_total,
    -- "is it caught up?": how far the furthest task has come, and how many wait
    max(s.last_agg_bar_ts_utc) FILTER (WHERE s.enabled) AS newest_cursor,
    count(*) FILTER (WHERE s.enabled AND s.status = 'idle' AND s.next_run_at <= now()) AS due
FROM tickagg.data_agg_state AS s
INNER JOIN tickagg.timeframes AS t ON t.timeframe = s.timeframe
GROUP BY s.task_kind, s.timeframe, t.sort_order
ORDER BY s.task_kind, t.sort_order;
