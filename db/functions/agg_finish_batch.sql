-- The end of a batch run (agg_run_rollup_batch, agg_run_indicators_batch), in
-- its transaction: a task whose result is NULL lost its lease (agg_batch_held)
-- and is only logged 'lease_lost'; every other is finished from its result's
-- cursor_to, bars_written and continue exactly as agg_finish finishes a success
-- (see there: cursor, pending_bucket_end, next_run_at, the dependents its new
-- cursor closes, the export wake of indicators), but all tasks in one statement
-- per step: agg_finish per task cost ~1.1 ms, 55-60% of a 500-task rollup batch
-- (bench_live_scale). Fenced like agg_finish: a task no longer running under its
-- claim at its cursor raises TK001 and nothing commits. All are logged under
-- their own run ids by one ops_log_runs. A cursor past agg_cursor_limit raises
-- TK004 and nothing commits.
CREATE OR REPLACE FUNCTION tickagg.agg_finish_batch(
    p_task_kind text,
    p_timeframe text,
    p_canonical_symbols text[],
    p_claim_tokens uuid[],
    p_cursors timestamptz[],
    p_run_ids uuid[],
    p_started_at timestamptz,
    p_results jsonb[]
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_source_timeframe text;
    v_fenced text;
    v_past text;
    v_advanced text[];
    v_exported text[];
    v_outcomes text[];
    v_bars bigint[];
    v_from timestamptz[];
    v_to timestamptz[];
    v_errors text[];
BEGIN
    IF p_task_kind NOT IN ('rollup', 'indicators') THEN
        RAISE EXCEPTION 'agg_finish_batch finishes rollup and indicators batches, not %', p_task_kind
            USING ERRCODE = 'TK004', HINT = 'Finish other task kinds with agg_finish.';
    END IF;
    v_source_timeframe := (SELECT t.source_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe);

    -- the rows are locked already (agg_batch_held, key order); this locks nothing new
    SELECT string_agg(r.symbol, ', ' ORDER BY r.symbol) INTO v_fenced
    FROM unnest(p_canonical_symbols, p_claim_tokens, p_cursors, p_results) AS r (symbol, claim_token, cursor_ts, result)
    LEFT JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = r.symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
    WHERE
        r.result IS NOT NULL
        AND (
            s.status IS DISTINCT FROM 'running' OR s.claim_token IS DISTINCT FROM r.claim_token
            OR s.last_agg_bar_ts_utc IS DISTINCT FROM r.cursor_ts
        );
    IF v_fenced IS NOT NULL THEN
        RAISE EXCEPTION 'lease on % % % is no longer held by this claim', p_task_kind, p_timeframe, v_fenced
            USING ERRCODE = 'TK001',
                  HINT = 'Another runner reclaimed the task after the lease expired; raise the lease if runs are slow.';
    END IF;

    -- a caller's cursor is not trusted past what the task's source has (see agg_finish);
    -- the limit is looked up once per advancing task (MATERIALIZED: not per row of a join)
    WITH advancing AS MATERIALIZED (
        SELECT x.symbol, (x.result ->> 'cursor_to')::timestamptz AS cursor_to
        FROM unnest(p_canonical_symbols, p_results) AS x (symbol, result)
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = x.symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
        WHERE x.result IS NOT NULL AND (x.result ->> 'cursor_to')::timestamptz > s.last_agg_bar_ts_utc
    )
    SELECT string_agg(format('%s to %s (frontier %s)', a.symbol, a.cursor_to, l.frontier), ', ' ORDER BY a.symbol)
    INTO v_past
    FROM advancing AS a
    CROSS JOIN LATERAL (
        SELECT tickagg.agg_cursor_limit(a.symbol, p_timeframe, p_task_kind, a.cursor_to) AS frontier
    ) AS l
    WHERE a.cursor_to > l.frontier;
    IF v_past IS NOT NULL THEN
        RAISE EXCEPTION 'cursors of % % cannot move past their frontier: %', p_task_kind, p_timeframe, v_past
            USING ERRCODE = 'TK004',
                  HINT = 'A run never passes what its source has; `tickagg tasks reset --cursor` repairs a cursor.';
    END IF;

    WITH done AS MATERIALIZED (
        SELECT
            s.canonical_symbol,
            s.last_agg_bar_ts_utc AS old_cursor,
            (r.result ->> 'bars_written')::bigint AS bars_written,
            coalesce((r.result ->> 'continue')::boolean, false) AS continues,
            -- woken by its source during this run (see agg_finish)
            s.next_run_at > s.running_started_at_utc AND s.next_run_at <= clock_timestamp() AS woken,
            CASE
                WHEN p_task_kind = 'indicators'
                    THEN coalesce((r.result ->> 'cursor_to')::timestamptz, s.last_agg_bar_ts_utc)
                ELSE greatest(
                    s.last_agg_bar_ts_utc, coalesce((r.result ->> 'cursor_to')::timestamptz, s.last_agg_bar_ts_utc)
                )
            END AS new_cursor,
            s.aggregation_delay,
            g.calendar_code,
            g.source_kind
        FROM unnest(p_canonical_symbols, p_results) AS r (symbol, result)
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = r.symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
        LEFT JOIN tickagg.core_asset_registry_all AS g ON g.canonical_symbol = r.symbol
        WHERE r.result IS NOT NULL
    ),
    -- The calendar functions run once per calendar and cursor, not once per task:
    -- a live batch's tasks mostly share both (per task they were most of the cost).
    ends AS MATERIALIZED (
        SELECT k.calendar_code, k.new_cursor, tickagg.rollup_bucket_end(k.calendar_code, p_timeframe, k.new_cursor) AS bucket_end
        FROM (SELECT DISTINCT d.calendar_code, d.new_cursor FROM done AS d WHERE p_task_kind = 'rollup') AS k
    ),
    -- a bar-fed 5m task is also due by time (see agg_finish): at the earliest end,
    -- plus the delay, of a bucket of any level holding 1m bars not materialised
    -- yet that its cursor does not close
    timed AS MATERIALIZED (
        SELECT d.canonical_symbol, d.calendar_code, d.new_cursor, n.newest
        FROM done AS d
        CROSS JOIN LATERAL (
            SELECT max(m.ts_utc) AS newest
            FROM tickagg.data_bars AS m
            WHERE m.canonical_symbol = d.canonical_symbol AND m.timeframe = '1m'
        ) AS n
        WHERE
            p_task_kind = 'rollup' AND v_source_timeframe = '1m' AND d.source_kind <> 'ticks'
            AND NOT (d.continues OR d.woken)
    ),
    levels AS MATERIALIZED (
        SELECT x.canonical_symbol, x.calendar_code, x.new_cursor, x.newest, l.timeframe
        FROM timed AS x
        INNER JOIN tickagg.data_agg_state AS l
            ON
                l.canonical_symbol = x.canonical_symbol AND l.task_kind = 'rollup' AND l.enabled
                AND l.timeframe <> p_timeframe AND l.last_agg_bar_ts_utc <= x.newest
    ),
    level_bounds AS MATERIALIZED (
        SELECT k.calendar_code, k.new_cursor, k.timeframe, tickagg.bucket_bounds(k.calendar_code, k.timeframe, k.new_cursor) AS bounds
        FROM (SELECT DISTINCT l.calendar_code, l.new_cursor, l.timeframe FROM levels AS l) AS k
    ),
    closes AS (
        SELECT x.canonical_symbol, e.bucket_end
        FROM timed AS x
        INNER JOIN ends AS e ON e.calendar_code = x.calendar_code AND e.new_cursor = x.new_cursor
        WHERE x.newest >= x.new_cursor
        UNION ALL
        SELECT l.canonical_symbol, upper(b.bounds)
        FROM levels AS l
        INNER JOIN level_bounds AS b
            ON b.calendar_code = l.calendar_code AND b.new_cursor = l.new_cursor AND b.timeframe = l.timeframe
        WHERE lower(b.bounds) <= l.newest
    ),
    first_closes AS (
        SELECT c.canonical_symbol, min(c.bucket_end) AS bucket_end FROM closes AS c GROUP BY c.canonical_symbol
    ),
    scheduled AS MATERIALIZED (
        SELECT d.*, e.bucket_end, f.bucket_end + d.aggregation_delay AS due_at
        FROM done AS d
        LEFT JOIN ends AS e ON e.calendar_code = d.calendar_code AND e.new_cursor = d.new_cursor
        LEFT JOIN first_closes AS f ON f.canonical_symbol = d.canonical_symbol
    ),
    finished AS (
        UPDATE tickagg.data_agg_state AS s SET
            last_agg_bar_ts_utc = c.new_cursor,
            pending_bucket_end = c.bucket_end,
            status = 'idle',
            claim_token = NULL,
            lease_expires_at = NULL,
            running_started_at_utc = NULL,
            hard_fail_streak = 0,
            transient_fail_streak = 0,
            last_error = NULL,
            last_successful_at_utc = now(),
            runs_total = s.runs_total + 1,
            bars_written_total = s.bars_written_total + coalesce(c.bars_written, 0),
            next_run_at = CASE
                WHEN c.continues OR c.woken THEN now()
                ELSE least(now() + tickagg.setting('idle_recheck_interval')::interval, c.due_at)
            END,
            updated_at = now()
        FROM scheduled AS c
        WHERE s.canonical_symbol = c.canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
        RETURNING c.canonical_symbol, c.new_cursor > c.old_cursor AS advanced, c.bars_written
    )
    SELECT
        array_agg(f.canonical_symbol) FILTER (WHERE f.advanced),
        array_agg(f.canonical_symbol) FILTER (WHERE f.bars_written > 0)
    INTO v_advanced, v_exported
    FROM finished AS f;

    IF p_task_kind = 'rollup' AND v_advanced IS NOT NULL THEN
        -- A source whose cursor advanced may have closed buckets of the timeframes
        -- built from it, even when it wrote no bar (see agg_finish): only a
        -- dependent whose pending bucket the new cursor closes; a running one may
        -- have read the old frontier, and its own finish runs it again.
        UPDATE tickagg.data_agg_state AS s SET next_run_at = clock_timestamp()
        FROM tickagg.timeframes AS t, tickagg.data_agg_state AS src
        WHERE
            t.source_timeframe = p_timeframe
            AND src.canonical_symbol = ANY(v_advanced) AND src.timeframe = p_timeframe AND src.task_kind = 'rollup'
            AND s.canonical_symbol = src.canonical_symbol
            AND s.timeframe = t.timeframe
            AND s.task_kind = 'rollup'
            AND (
                s.pending_bucket_end IS NULL OR s.pending_bucket_end <= src.last_agg_bar_ts_utc
                OR s.last_agg_bar_ts_utc + s.timeframe_step <= src.last_agg_bar_ts_utc
            )
            AND (s.next_run_at > clock_timestamp() OR s.status = 'running');
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    -- indicator values have no trigger of their own (bars' writes wake export there)
    IF p_task_kind = 'indicators' AND v_exported IS NOT NULL THEN
        PERFORM tickagg.export_wake(v_exported);
    END IF;

    SELECT
        array_agg(CASE WHEN r.result IS NULL THEN 'lease_lost' ELSE 'success' END ORDER BY r.ord),
        array_agg((r.result ->> 'bars_written')::bigint ORDER BY r.ord),
        array_agg(CASE WHEN r.result IS NOT NULL THEN r.cursor_ts END ORDER BY r.ord),
        array_agg((r.result ->> 'cursor_to')::timestamptz ORDER BY r.ord),
        array_agg(
            CASE WHEN r.result IS NULL THEN 'lease no longer held by this claim: skipped in its batch, nothing written' END
            ORDER BY r.ord
        )
    INTO v_outcomes, v_bars, v_from, v_to, v_errors
    FROM unnest(p_results, p_cursors) WITH ORDINALITY AS r (result, cursor_ts, ord);
    PERFORM tickagg.ops_log_runs(
        p_run_ids, p_canonical_symbols, p_timeframe, p_task_kind, p_started_at, v_outcomes, v_bars, v_from, v_to,
        v_errors
    );
END
$$;

COMMENT ON FUNCTION tickagg.agg_finish_batch(text, text, text[], uuid[], timestamptz[], uuid[], timestamptz, jsonb[]) IS
'Finish every task of a batch run in its transaction, set-based with agg_finish''s semantics, and log them all with one ops_log_runs; lease_lost for a NULL result.';
