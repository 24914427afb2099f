-- A batch of claimed rollup tasks of one timeframe (agg_claim_batch) run in one
-- call, so one statement and one transaction: each task's bars, cursor, finish
-- and run log row commit together with every other's, or none does.
--   1. Fencing (agg_batch_held): a task whose claim token or cursor changed
--      since its claim (its lease expired and another runner took it over) is
--      skipped: none of its bars is written, its run is logged 'lease_lost', and
--      the rest of the batch goes on.
--   2. Each task is planned by catchup_aggregation_range (p_write false): its
--      dirty spans taken, its frontier and closed buckets, exactly as its own run.
--   3. The few buckets of every live task are written by one statement over all
--      symbols (rollup_ranges). A task that redoes late buckets (and
--      cascades them to the levels above) or has many buckets (a backfill) is
--      written as its own run writes it (rollup_cascade_dirty).
--   4. Each task is finished and logged under its own run id (agg_finish_batch).
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
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_claim_tokens)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_run_ids) THEN
        RAISE EXCEPTION 'agg_run_rollup_batch: symbols, claim tokens, cursors and run ids differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one claim token, cursor and run id per symbol.';
    END IF;
    v_step := (SELECT t.step FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe);

    v_held := tickagg.agg_batch_held('rollup', p_timeframe, p_canonical_symbols, p_claim_tokens, p_cursors);

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
        IF v_plans[v_i] IS NOT NULL THEN
            v_plans[v_i] := (v_plans[v_i] - 'ranges' - 'redoes_dirty' - 'calendar_code' - 'max_windows')
                || coalesce(v_counts -> p_canonical_symbols[v_i], '{}'::jsonb);
        END IF;
    END LOOP;
    PERFORM tickagg.agg_finish_batch(
        'rollup', p_timeframe, p_canonical_symbols, p_claim_tokens, p_cursors, p_run_ids, p_started_at, v_plans
    );
    RETURN QUERY
    SELECT c.symbol, CASE WHEN c.result IS NULL THEN 'lease_lost' ELSE 'success' END, c.result
    FROM unnest(p_canonical_symbols, v_plans) AS c (symbol, result);
END
$$;

COMMENT ON FUNCTION tickagg.agg_run_rollup_batch(text, text[], uuid[], timestamptz[], uuid[], timestamptz, integer) IS
'Run a batch of claimed rollup tasks of one timeframe in one statement: fenced per task, planned per task, the live buckets of all written at once, each finished and logged.';
