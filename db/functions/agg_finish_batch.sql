-- The end of a batch run (agg_run_rollup_batch, agg_run_indicators_batch), in
-- its transaction: a task whose result is NULL lost its lease (agg_batch_held)
-- and is only logged 'lease_lost'; every other is finished by agg_finish (one
-- definition of success for every path) from its result's cursor_to,
-- bars_written and continue. All are logged under their own run ids by one
-- ops_log_runs (one INSERT: a row per call cost more than its insert).
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
    v_outcomes text[];
    v_bars bigint[];
    v_from timestamptz[];
    v_to timestamptz[];
    v_errors text[];
BEGIN
    FOR v_i IN 1 .. coalesce(cardinality(p_canonical_symbols), 0) LOOP
        IF p_results[v_i] IS NOT NULL THEN
            PERFORM tickagg.agg_finish(
                p_canonical_symbol => p_canonical_symbols[v_i],
                p_timeframe => p_timeframe,
                p_task_kind => p_task_kind,
                p_claim_token => p_claim_tokens[v_i],
                p_outcome => 'success',
                p_cursor_from => p_cursors[v_i],
                p_cursor_to => (p_results[v_i] ->> 'cursor_to')::timestamptz,
                p_bars_written => (p_results[v_i] ->> 'bars_written')::integer,
                p_continue => (p_results[v_i] ->> 'continue')::boolean
            );
        END IF;
    END LOOP;
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
'Finish every task of a batch run in its transaction (agg_finish per task) and log them all with one ops_log_runs; lease_lost for a NULL result.';
