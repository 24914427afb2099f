-- Per task: how long its oldest closed bucket has waited to be materialised
-- (refresh_lag), last success, failure streak, and HEALTHY / WARNING / DELAYED
-- by the thresholds of its timeframe. Failed or disabled tasks are DELAYED.
-- A gap scan or a ticks retention run has no buckets: its lag is how long its
-- next run is overdue. An indicators task waits on bars, not on time: its lag
-- is how long the oldest bar it has not computed yet has been closed (0 when
-- it has computed all). A rollup or ticks task that is not due has no lag: it
-- waits for a bucket to close or for its source (see agg_finish).
CREATE OR REPLACE VIEW tickagg.aggregation_health AS
SELECT
    s.canonical_symbol,
    s.timeframe,
    s.task_kind,
    s.status AS task_status,
    s.is_mandatory,
    s.last_agg_bar_ts_utc AS cursor_ts,
    greatest(l.lag, interval '0') AS refresh_lag,
    s.last_successful_at_utc AS last_refresh,
    s.next_run_at AS next_refresh,
    s.hard_fail_streak,
    s.transient_fail_streak,
    s.last_error,
    CASE
        WHEN s.status IN ('hard_failed', 'disabled') OR NOT s.enabled THEN 'DELAYED'
        WHEN l.lag > t.health_delayed_lag THEN 'DELAYED'
        WHEN l.lag > t.health_warning_lag
            OR s.hard_fail_streak > 0 OR s.transient_fail_streak > 0 THEN 'WARNING'
        ELSE 'HEALTHY'
    END AS status
FROM tickagg.data_agg_state AS s
INNER JOIN tickagg.timeframes AS t ON t.timeframe = s.timeframe
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN s.task_kind IN ('gap_scan', 'gap_scan_history', 'ticks_retention') THEN now() - s.next_run_at
        WHEN s.task_kind = 'indicators'
            THEN coalesce(
                    now() - (
                        SELECT min(d.bucket_end)
                        FROM tickagg.derived_data_bars AS d
                        WHERE
                            d.canonical_symbol = s.canonical_symbol
                            AND d.timeframe = s.timeframe
                            AND d.ts_utc >= s.last_agg_bar_ts_utc
                            AND d.deleted_at IS NULL
                    ),
                    interval '0'
                )
        -- asleep until a bucket can close or its source writes (agg_finish): a
        -- cursor left behind over a quiet or closed market is no lag
        WHEN s.status = 'idle' AND s.next_run_at > now() AND s.transient_fail_streak = 0 THEN interval '0'
        ELSE now() - s.last_agg_bar_ts_utc - t.step - s.aggregation_delay
    END AS lag
) AS l;
