-- A batch of claimed live ticks_1m tasks (agg_claim_batch, ticks_task_is_live)
-- run in one statement: when a minute closes, the bars of a whole tick-fed market
-- are written by one INSERT (ticks_write_minutes), so the write's triggers run
-- once, not once per symbol, and there is one claim and one commit. Each task is
-- fenced (agg_batch_held locks the rows in key order before any tick is read,
-- as ticks_aggregate_minutes locks its row; a task whose lease was taken over is
-- skipped and logged 'lease_lost'), its forward minutes are planned exactly as
-- ticks_aggregate_minutes plans them (cursor, frontier, p_max_windows), and it is
-- finished by agg_finish under its own claim and logged under its own run id.
-- Late minutes a producer queued after the claim stay queued: agg_finish then
-- makes the task due at once, and it runs alone. Returns one row per task:
-- 'success' with the jsonb ticks_aggregate_minutes returns, or 'lease_lost'.
CREATE OR REPLACE FUNCTION tickagg.agg_run_ticks_batch(
    p_canonical_symbols text[],
    p_claim_tokens uuid[],
    p_cursors timestamptz[],
    p_run_ids uuid[],
    p_started_at timestamptz,
    p_max_windows integer DEFAULT NULL
)
RETURNS TABLE (canonical_symbol text, outcome text, result jsonb)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_held boolean[];
    v_default_max_windows integer := tickagg.setting('default_max_windows')::integer;
    v_results jsonb[];
    v_task record;
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_claim_tokens)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_run_ids) THEN
        RAISE EXCEPTION 'agg_run_ticks_batch: symbols, claim tokens, cursors and run ids differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one claim token, cursor and run id per symbol.';
    END IF;
    v_held := tickagg.agg_batch_held('ticks_1m', '1m', p_canonical_symbols, p_claim_tokens, p_cursors);

    IF coalesce(p_max_windows, v_default_max_windows) < 1 OR EXISTS (
        SELECT 1 FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = ANY(p_canonical_symbols) AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
            AND coalesce(p_max_windows, s.max_windows, v_default_max_windows) < 1
    ) THEN
        RAISE EXCEPTION 'max_windows must be at least 1' USING ERRCODE = 'TK004';
    END IF;

    -- (a new statement: it sees every tick committed before the rows were locked)
    WITH planned AS MATERIALIZED (
        -- each held task's forward stretch, planned as ticks_aggregate_minutes plans it
        SELECT
            x.ord, x.symbol, x.cursor_from, x.live_from, x.mid, y.start_ts, x.frontier,
            CASE WHEN y.start_ts + x.max_windows * interval '1 minute' < x.frontier
                THEN y.start_ts + x.max_windows * interval '1 minute' ELSE x.frontier END AS cursor_to,
            coalesce(y.start_ts + x.max_windows * interval '1 minute' < x.frontier, false) AS more
        FROM (
            SELECT
                t.*,
                greatest(
                    date_trunc('minute', now() - t.aggregation_delay), date_trunc('minute', k.newest_ts), t.live_from
                ) AS frontier,
                k.first_ts
            FROM (
                SELECT
                    c.ord, c.symbol, c.cursor_ts AS cursor_from,
                    greatest(c.cursor_ts, date_trunc('minute', s.agg_start_utc)) AS live_from,
                    s.aggregation_delay,
                    coalesce(p_max_windows, s.max_windows, v_default_max_windows) AS max_windows,
                    r.price_kind = 'mid' AS mid
                FROM unnest(p_canonical_symbols, p_cursors) WITH ORDINALITY AS c (symbol, cursor_ts, ord)
                INNER JOIN tickagg.data_agg_state AS s
                    ON s.canonical_symbol = c.symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
                INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = c.symbol
                WHERE v_held[c.ord]
            ) AS t
            CROSS JOIN LATERAL (
                SELECT min(k.ts_utc) AS first_ts, max(k.ts_utc) AS newest_ts
                FROM tickagg.ticks AS k
                WHERE k.canonical_symbol = t.symbol AND k.ts_utc >= t.live_from
            ) AS k
        ) AS x
        CROSS JOIN LATERAL (
            SELECT CASE WHEN x.first_ts < x.frontier THEN date_trunc('minute', x.first_ts) END AS start_ts
        ) AS y
    ),
    written AS MATERIALIZED (
        SELECT w.canonical_symbol, w.minutes, w.written
        FROM (
            SELECT
                array_agg(b.symbol) AS symbols, array_agg(b.mid) AS mids, array_agg(b.start_ts) AS lowers,
                array_agg(b.cursor_to) AS uppers, array_agg(b.live_from) AS live_from
            FROM planned AS b
            WHERE b.start_ts IS NOT NULL
        ) AS a
        CROSS JOIN LATERAL tickagg.ticks_write_minutes(a.symbols, a.mids, a.lowers, a.uppers, a.live_from) AS w
        WHERE a.symbols IS NOT NULL
    )
    SELECT array_agg(
        CASE WHEN b.symbol IS NOT NULL THEN
            jsonb_build_object(
                'success', true,
                'windows_processed', coalesce(w.minutes, 0),
                'bars_written', coalesce(w.written, 0),
                'dirty_ranges', 0,
                'cursor_from', b.cursor_from,
                'cursor_to', greatest(b.cursor_to, b.cursor_from),
                'frontier', b.frontier,
                'continue', b.more
            )
        END
        ORDER BY c.ord
    )
    INTO v_results
    FROM unnest(p_canonical_symbols) WITH ORDINALITY AS c (symbol, ord)
    LEFT JOIN planned AS b ON b.ord = c.ord
    LEFT JOIN written AS w ON w.canonical_symbol = b.symbol;

    FOR v_task IN
        SELECT c.symbol, c.claim_token, c.cursor_ts, c.result
        FROM unnest(p_canonical_symbols, p_claim_tokens, p_cursors, v_results) AS c (symbol, claim_token, cursor_ts, result)
        WHERE c.result IS NOT NULL
        ORDER BY c.symbol
    LOOP
        PERFORM tickagg.agg_finish(
            p_canonical_symbol => v_task.symbol,
            p_timeframe => '1m',
            p_task_kind => 'ticks_1m',
            p_claim_token => v_task.claim_token,
            p_outcome => 'success',
            p_cursor_from => v_task.cursor_ts,
            p_cursor_to => (v_task.result ->> 'cursor_to')::timestamptz,
            p_bars_written => (v_task.result ->> 'bars_written')::integer,
            p_continue => (v_task.result ->> 'continue')::boolean
        );
    END LOOP;
    PERFORM tickagg.ops_log_runs(
        p_run_ids, p_canonical_symbols, '1m', 'ticks_1m', p_started_at,
        ARRAY(SELECT CASE WHEN r IS NULL THEN 'lease_lost' ELSE 'success' END FROM unnest(v_results) AS r),
        ARRAY(SELECT (r ->> 'bars_written')::bigint FROM unnest(v_results) AS r),
        p_cursors,
        ARRAY(SELECT (r ->> 'cursor_to')::timestamptz FROM unnest(v_results) AS r),
        ARRAY(SELECT NULL::text FROM unnest(v_results) AS r)
    );
    RETURN QUERY
    SELECT c.symbol, CASE WHEN c.result IS NULL THEN 'lease_lost' ELSE 'success' END, c.result
    FROM unnest(p_canonical_symbols, v_results) AS c (symbol, result);
END
$$;

COMMENT ON FUNCTION tickagg.agg_run_ticks_batch(text[], uuid[], timestamptz[], uuid[], timestamptz, integer) IS
'Run a batch of claimed live ticks_1m tasks in one statement: fenced per task, every symbol''s closed minutes written by one INSERT, each finished and logged.';
