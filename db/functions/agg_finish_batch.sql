-- The end of a batch run (agg_run_rollup_batch, agg_run_indicators_batch), in
-- its transaction: per task, in the order given, a task whose result is NULL
-- lost its lease (agg_batch_held) and is only logged 'lease_lost'; every other
-- is finished by agg_finish (one definition of success for every path) and
-- logged by ops_log_run under its own run id, from its result's cursor_to,
-- bars_written and continue.
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
BEGIN
    FOR v_i IN 1 .. coalesce(cardinality(p_canonical_symbols), 0) LOOP
        IF p_results[v_i] IS NULL THEN
            PERFORM tickagg.ops_log_run(
                p_run_id => p_run_ids[v_i],
                p_canonical_symbol => p_canonical_symbols[v_i],
                p_timeframe => p_timeframe,
                p_task_kind => p_task_kind,
                p_started_at => p_started_at,
                p_outcome => 'lease_lost',
                p_error => 'lease no longer held by this claim: skipped in its batch, nothing written'
            );
            CONTINUE;
        END IF;
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
        PERFORM tickagg.ops_log_run(
            p_run_id => p_run_ids[v_i],
            p_canonical_symbol => p_canonical_symbols[v_i],
            p_timeframe => p_timeframe,
            p_task_kind => p_task_kind,
            p_started_at => p_started_at,
            p_outcome => 'success',
            p_bars_written => (p_results[v_i] ->> 'bars_written')::bigint,
            p_cursor_from => p_cursors[v_i],
            p_cursor_to => (p_results[v_i] ->> 'cursor_to')::timestamptz
        );
    END LOOP;
END
$$;

COMMENT ON FUNCTION tickagg.agg_finish_batch(text, text, text[], uuid[], timestamptz[], uuid[], timestamptz, jsonb[]) IS
'Finish and log every task of a batch run in its transaction: agg_finish + ops_log_run per task, lease_lost for a NULL result.';
