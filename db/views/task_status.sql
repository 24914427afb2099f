-- One row per task, for `tickagg status` and psql.
CREATE OR REPLACE VIEW tickagg.task_status AS
SELECT
    s.canonical_symbol,
    s.timeframe,
    s.task_kind,
    s.status,
    s.enabled,
    s.is_mandatory,
    s.task_priority,
    s.last_agg_bar_ts_utc AS cursor_ts,
    now() - s.last_agg_bar_ts_utc AS lag,
    s.hard_fail_streak,
    s.transient_fail_streak,
    s.next_run_at,
    s.last_successful_at_utc,
    s.last_error,
    s.runs_total,
    s.bars_written_total,
    (
        SELECT count(*) FROM tickagg.agg_invalidations AS i
        WHERE i.canonical_symbol = s.canonical_symbol AND i.timeframe = s.timeframe
    ) AS pending_invalidations,
    -- switched off by `tickagg tasks disable` (sync leaves it off) rather than by sync
    s.disabled_by_user
FROM tickagg.data_agg_state AS s
INNER JOIN tickagg.timeframes AS t ON t.timeframe = s.timeframe
ORDER BY s.canonical_symbol, t.sort_order, s.task_kind;
