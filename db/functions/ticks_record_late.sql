-- Statement trigger on ticks. Per symbol with a ticks_1m task:
--   late ticks (before the task's cursor) -> their minutes become agg_invalidations
--     rows of timeframe '1m', which the next run re-aggregates;
--   late ticks, or a tick of a minute after the cursor's (it closes the cursor's
--     minute before the delay runs out) -> the task is made due now and runners
--     are notified.
-- Coalesced: a task already due (or woken during its run) is not touched again,
-- so a stream of ticks wakes each symbol at most once per run, whatever its rate.
-- Ticks of the current minute wake nothing: the minute's close is a time event
-- (agg_finish schedules the task for it).
CREATE OR REPLACE FUNCTION tickagg.ticks_record_late()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_woken bigint;
BEGIN
    WITH per_symbol AS MATERIALIZED (
        SELECT
            n.canonical_symbol,
            s.last_agg_bar_ts_utc AS cursor_ts,
            min(n.ts_utc) AS first_ts,
            max(n.ts_utc) AS last_ts
        FROM new_ticks AS n
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = n.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
        GROUP BY n.canonical_symbol, s.last_agg_bar_ts_utc
    ),
    -- one pass over the statement's ticks, whatever the number of symbols
    late AS (
        INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
        SELECT m.canonical_symbol, '1m', d.span
        FROM (
            SELECT x.canonical_symbol, range_agg(tstzrange(x.minute, x.minute + interval '1 minute')) AS spans
            FROM (
                SELECT DISTINCT n.canonical_symbol, date_trunc('minute', n.ts_utc) AS minute
                FROM new_ticks AS n
                INNER JOIN per_symbol AS p ON p.canonical_symbol = n.canonical_symbol
                WHERE p.first_ts < p.cursor_ts AND n.ts_utc < p.cursor_ts
            ) AS x
            GROUP BY x.canonical_symbol
        ) AS m
        CROSS JOIN LATERAL unnest(m.spans) AS d (span)
        RETURNING 1
    ),
    woken AS (
        UPDATE tickagg.data_agg_state AS s SET next_run_at = clock_timestamp()
        FROM per_symbol AS p
        WHERE
            s.canonical_symbol = p.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
            AND (p.first_ts < p.cursor_ts OR p.last_ts >= p.cursor_ts + interval '1 minute')
            AND (
                (s.status = 'idle' AND s.next_run_at > clock_timestamp())
                OR (s.status = 'running' AND s.next_run_at <= s.running_started_at_utc)
            )
        RETURNING 1
    )
    -- late runs whether read or not: PostgreSQL executes every data-modifying CTE
    SELECT count(*) INTO v_woken FROM woken;
    IF v_woken > 0 THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.ticks_record_late() IS
'Trigger: record minutes dirtied by late ticks and wake the symbol''s ticks_1m task (coalesced) when ticks are late or close a minute.';
