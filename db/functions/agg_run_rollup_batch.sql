-- A batch of claimed rollup tasks of one timeframe (agg_claim_batch) run in one
-- call, so one statement and one transaction: each task's bars, cursor, finish
-- and run log row commit together with every other's, or none does.
--   1. Fencing: the tasks' rows are locked (in key order, so two batches never
--      deadlock) and a task whose claim token or cursor changed since its claim
--      (its lease expired and another runner took it over) is skipped: none of
--      its bars is written, its run is logged 'lease_lost', and the rest of the
--      batch goes on. A locked row cannot be reclaimed (the claim skips locked
--      rows), so what is held here stays held until the commit.
--   2. Each task is planned by catchup_aggregation_range (p_write false): its
--      dirty spans taken, its frontier and closed buckets, exactly as its own run.
--   3. The few buckets of every live task are written by one statement over all
--      symbols (rollup_ranges). A task that redoes late buckets (and
--      cascades them to the levels above) or has many buckets (a backfill) is
--      written as its own run writes it (rollup_cascade_dirty).
--   4. Each task is finished by agg_finish (one definition of success for both
--      paths) and logged by ops_log_run under its own run id.
-- Returns one row per task: 'success' with the catch-up result agg_run_rollup
-- returns, or 'lease_lost'.
CREATE OR REPLACE FUNCTION tickagg.agg_run_rollup_batch(
    p_timeframe text,
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
#variable_conflict use_column
DECLARE
    v_step interval;
    v_held boolean[];
    v_plans jsonb[] := '{}';
    v_plan jsonb;
    v_ranges tstzmultirange;
    v_written jsonb;
    v_batch_symbols text[] := '{}';
    v_batch_ranges tstzmultirange[] := '{}';
    v_counts jsonb;
    v_result jsonb;
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_claim_tokens)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_run_ids) THEN
        RAISE EXCEPTION 'agg_run_rollup_batch: symbols, claim tokens, cursors and run ids differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one claim token, cursor and run id per symbol.';
    END IF;
    v_step := (SELECT t.step FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe);

    -- held[i]: task i is still this claim's (its row locked first, in key order)
    SELECT array_agg(
        l.status IS NOT DISTINCT FROM 'running'
        AND l.claim_token IS NOT DISTINCT FROM c.claim_token
        AND l.last_agg_bar_ts_utc IS NOT DISTINCT FROM c.cursor_ts
        ORDER BY c.ord
    )
    INTO v_held
    FROM unnest(p_canonical_symbols, p_claim_tokens, p_cursors) WITH ORDINALITY AS c (symbol, claim_token, cursor_ts, ord)
    LEFT JOIN (
        SELECT s.canonical_symbol AS symbol, s.status, s.claim_token, s.last_agg_bar_ts_utc
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = ANY(p_canonical_symbols)
            AND s.timeframe = p_timeframe
            AND s.task_kind = 'rollup'
        ORDER BY s.canonical_symbol
        FOR UPDATE OF s
    ) AS l ON l.symbol = c.symbol;

    FOR v_i IN 1 .. coalesce(cardinality(p_canonical_symbols), 0) LOOP
        v_plan := NULL;
        IF v_held[v_i] THEN
            v_plan := tickagg.catchup_aggregation_range(
                p_canonical_symbols[v_i], p_timeframe, p_cursors[v_i], p_max_windows, p_write => false
            );
            v_ranges := (v_plan ->> 'ranges')::tstzmultirange;
            IF isempty(v_ranges) THEN
                v_plan := v_plan || jsonb_build_object(
                    'windows_processed', 0, 'bars_written', 0, 'partial_bars', 0, 'bars_deleted', 0,
                    'cascaded', '{}'::jsonb
                );
            ELSIF (v_plan ->> 'redoes_dirty')::boolean OR NOT tickagg.few_buckets(v_ranges, v_step) THEN
                v_written := tickagg.rollup_cascade_dirty(
                    p_canonical_symbols[v_i], p_timeframe, v_plan ->> 'calendar_code',
                    (v_plan ->> 'max_windows')::integer, v_ranges, (v_plan ->> 'redoes_dirty')::boolean
                );
                v_plan := v_plan || jsonb_build_object(
                    'windows_processed', (v_written ->> 'buckets_with_data')::bigint,
                    'bars_written', (v_written ->> 'bars_written')::bigint,
                    'partial_bars', (v_written ->> 'partial_bars')::bigint,
                    'bars_deleted', (v_written ->> 'bars_deleted')::bigint,
                    'cascaded', coalesce(v_written -> 'cascaded', '{}'::jsonb)
                );
            ELSE
                v_batch_symbols := v_batch_symbols || p_canonical_symbols[v_i];
                v_batch_ranges := v_batch_ranges || v_ranges;
            END IF;
        END IF;
        v_plans := v_plans || v_plan;
    END LOOP;

    IF cardinality(v_batch_symbols) > 0 THEN
        SELECT jsonb_object_agg(
            b.canonical_symbol,
            jsonb_build_object(
                'windows_processed', b.buckets_with_data, 'bars_written', b.bars_written,
                'partial_bars', b.partial_bars, 'bars_deleted', b.bars_deleted, 'cascaded', '{}'::jsonb
            )
        )
        INTO v_counts
        FROM tickagg.rollup_ranges(
            v_batch_symbols, array_fill(p_timeframe, ARRAY[cardinality(v_batch_symbols)]), v_batch_ranges
        ) AS b;
    END IF;

    FOR v_i IN 1 .. coalesce(cardinality(p_canonical_symbols), 0) LOOP
        canonical_symbol := p_canonical_symbols[v_i];
        IF v_plans[v_i] IS NULL THEN
            outcome := 'lease_lost';
            result := NULL;
            PERFORM tickagg.ops_log_run(
                p_run_id => p_run_ids[v_i],
                p_canonical_symbol => p_canonical_symbols[v_i],
                p_timeframe => p_timeframe,
                p_task_kind => 'rollup',
                p_started_at => p_started_at,
                p_outcome => 'lease_lost',
                p_error => 'lease no longer held by this claim: skipped in its batch, nothing written'
            );
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_result := (v_plans[v_i] - 'ranges' - 'redoes_dirty' - 'calendar_code' - 'max_windows')
            || coalesce(v_counts -> p_canonical_symbols[v_i], '{}'::jsonb);
        PERFORM tickagg.agg_finish(
            p_canonical_symbol => p_canonical_symbols[v_i],
            p_timeframe => p_timeframe,
            p_task_kind => 'rollup',
            p_claim_token => p_claim_tokens[v_i],
            p_outcome => 'success',
            p_cursor_from => p_cursors[v_i],
            p_cursor_to => (v_result ->> 'cursor_to')::timestamptz,
            p_bars_written => (v_result ->> 'bars_written')::integer,
            p_continue => (v_result ->> 'continue')::boolean
        );
        PERFORM tickagg.ops_log_run(
            p_run_id => p_run_ids[v_i],
            p_canonical_symbol => p_canonical_symbols[v_i],
            p_timeframe => p_timeframe,
            p_task_kind => 'rollup',
            p_started_at => p_started_at,
            p_outcome => 'success',
            p_bars_written => (v_result ->> 'bars_written')::bigint,
            p_cursor_from => p_cursors[v_i],
            p_cursor_to => (v_result ->> 'cursor_to')::timestamptz
        );
        outcome := 'success';
        result := v_result;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION tickagg.agg_run_rollup_batch(text, text[], uuid[], timestamptz[], uuid[], timestamptz, integer) IS
'Run a batch of claimed rollup tasks of one timeframe in one statement: fenced per task, planned per task, the live buckets of all written at once, each finished and logged.';
