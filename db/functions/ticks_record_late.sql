-- Statement trigger on ticks. Per symbol with a ticks_1m task:
--   late ticks (before the task's cursor) -> their minutes become agg_invalidations
--     rows of timeframe '1m', which the next run re-aggregates;
--   late ticks, or a tick of a minute after the cursor's (it closes the cursor's
--     minute before the delay runs out) -> the task is made due now and runners
--     are notified;
--   ticks of the cursor's minute only -> the task is scheduled for that minute's
--     close plus its delay (a time event: no later tick may come to close it),
--     and runners are notified so that they sleep until then. A silent symbol's
--     task is scheduled by nothing and costs no runs (agg_finish).
-- Coalesced: a task already due by then (or woken during its run) is not
-- touched again, so a stream of ticks wakes each symbol at most once per run
-- and schedules it at most once per minute, whatever its rate.
-- A run of the task locks its row FOR UPDATE before it reads ticks; this trigger
-- takes FOR KEY SHARE on the rows of its symbols (in symbol order) before it reads
-- their cursors, and holds it to commit. So a tick committed while a run is under
-- way is either seen by that run (the run waited for this transaction) or judged
-- against the cursor that run committed (this trigger waited for the run): never
-- behind a cursor without being recorded as late.
CREATE OR REPLACE FUNCTION tickagg.ticks_record_late()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_symbols text[];
    v_first timestamptz[];
    v_last timestamptz[];
    v_woken bigint;
BEGIN
    -- a re-sent chunk that was all duplicates inserted nothing: nothing to record
    IF NOT EXISTS (SELECT 1 FROM new_ticks) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(x.canonical_symbol ORDER BY x.canonical_symbol), array_agg(x.first_ts ORDER BY x.canonical_symbol),
           array_agg(x.last_ts ORDER BY x.canonical_symbol)
    INTO v_symbols, v_first, v_last
    FROM (
        SELECT n.canonical_symbol, min(n.ts_utc) AS first_ts, max(n.ts_utc) AS last_ts
        FROM new_ticks AS n
        GROUP BY n.canonical_symbol
    ) AS x;

    PERFORM 1
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = ANY(v_symbols) AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
    ORDER BY s.canonical_symbol
    FOR KEY SHARE;

    -- a new statement, so a run that committed while we waited is seen
    WITH per_symbol AS MATERIALIZED (
        SELECT u.canonical_symbol, s.last_agg_bar_ts_utc AS cursor_ts, s.aggregation_delay, u.first_ts, u.last_ts
        FROM unnest(v_symbols, v_first, v_last) AS u (canonical_symbol, first_ts, last_ts)
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = u.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
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
    closing AS (
        SELECT
            p.canonical_symbol,
            p.cursor_ts,
            p.aggregation_delay,
            p.first_ts < p.cursor_ts OR p.last_ts >= p.cursor_ts + interval '1 minute' AS closes
        FROM per_symbol AS p
    ),
    due AS (
        SELECT
            c.canonical_symbol,
            c.closes,
            CASE WHEN c.closes THEN clock_timestamp() ELSE c.cursor_ts + interval '1 minute' + c.aggregation_delay END
                AS due_at
        FROM closing AS c
    ),
    -- rows locked in symbol order: two producers waking the same symbols never deadlock
    to_wake AS (
        SELECT s.canonical_symbol, d.due_at
        FROM tickagg.data_agg_state AS s
        INNER JOIN due AS d ON d.canonical_symbol = s.canonical_symbol
        WHERE
            s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
            AND (
                (s.status = 'idle' AND s.next_run_at > d.due_at)
                OR (d.closes AND s.status = 'running' AND s.next_run_at <= s.running_started_at_utc)
            )
        ORDER BY s.canonical_symbol
        FOR NO KEY UPDATE OF s
    ),
    woken AS (
        UPDATE tickagg.data_agg_state AS s SET next_run_at = w.due_at
        FROM to_wake AS w
        WHERE s.canonical_symbol = w.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
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
'Trigger: record minutes dirtied by late ticks; wake the symbol''s ticks_1m task (coalesced) when ticks are late or close a minute, else schedule it for the close of their minute.';
