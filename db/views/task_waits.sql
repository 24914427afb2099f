-- Per task kind: the tasks due now that no runner has claimed yet, and how long
-- the one due longest has waited (since its next_run_at, or, for a rollup due
-- through late writes, since the oldest of them). A wait that keeps growing for
-- one kind while others run is starvation; claims take a task first once it has
-- waited the setting claim_max_wait (agg_get_due_tasks). For `tickagg status`
-- and the tickagg_oldest_due_wait_seconds metric.
CREATE OR REPLACE VIEW tickagg.task_waits AS
WITH due AS (
    SELECT s.task_kind, s.next_run_at AS since
    FROM tickagg.data_agg_state AS s
    WHERE s.enabled AND s.status = 'idle' AND s.next_run_at <= now()
    UNION ALL
    SELECT 'rollup' AS task_kind, min(i.created_at) AS since
    FROM tickagg.agg_invalidations AS i
    INNER JOIN tickagg.data_agg_state AS s
        ON
            s.canonical_symbol = i.canonical_symbol AND s.timeframe = i.timeframe
            AND s.task_kind = 'rollup'
    WHERE s.enabled AND s.status = 'idle' AND s.next_run_at > now()
    GROUP BY i.canonical_symbol, i.timeframe
)

SELECT
    d.task_kind,
    count(*) AS due,
    extract(EPOCH FROM now() - min(d.since))::float8 AS oldest_wait_seconds
FROM due AS d
GROUP BY d.task_kind
ORDER BY d.task_kind;
