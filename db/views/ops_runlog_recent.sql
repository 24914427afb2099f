-- The run log, newest first, with each run's duration (last 1000 runs).
CREATE OR REPLACE VIEW tickagg.ops_runlog_recent AS
SELECT
    o.run_id,
    o.canonical_symbol,
    o.timeframe,
    o.task_kind,
    o.outcome,
    o.started_at,
    o.finished_at,
    o.finished_at - o.started_at AS duration,
    o.bars_written,
    o.cursor_from,
    o.cursor_to,
    o.error
FROM tickagg.ops_runlog AS o
ORDER BY o.started_at DESC
LIMIT 1000;
