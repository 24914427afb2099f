-- One claimed rollup run in a single call: catchup_aggregation_range, then
-- agg_finish (fenced by the claim token and the cursor the task was claimed at)
-- and the run's ops_runlog row. The runner sends it as one statement, which is
-- its own transaction: the bars, the cursor and the log row commit together or
-- not at all. As separate calls (begin, catch-up, finish, log, commit) the round
-- trips cost a late bar's run 0.65 ms of its 4.8.
CREATE OR REPLACE FUNCTION tickagg.agg_run_rollup(
    p_canonical_symbol text,
    p_timeframe text,
    p_claim_token uuid,
    p_cursor timestamptz,
    p_run_id uuid,
    p_started_at timestamptz,
    p_max_windows integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_result jsonb;
BEGIN
    v_result := tickagg.catchup_aggregation_range(
        p_canonical_symbol => p_canonical_symbol,
        p_timeframe => p_timeframe,
        p_cursor => p_cursor,
        p_max_windows => p_max_windows
    );
    IF (v_result ->> 'success')::boolean IS NOT TRUE THEN
        -- rolls the run back before anything is finished or logged
        RAISE EXCEPTION 'catch-up of % % failed: %', p_canonical_symbol, p_timeframe, v_result
            USING ERRCODE = 'TK004', HINT = 'The runner records the failure and retries the task.';
    END IF;
    PERFORM tickagg.agg_finish(
        p_canonical_symbol => p_canonical_symbol,
        p_timeframe => p_timeframe,
        p_task_kind => 'rollup',
        p_claim_token => p_claim_token,
        p_outcome => 'success',
        p_cursor_from => p_cursor,
        p_cursor_to => (v_result ->> 'cursor_to')::timestamptz,
        p_bars_written => (v_result ->> 'bars_written')::integer,
        p_continue => (v_result ->> 'continue')::boolean
    );
    PERFORM tickagg.ops_log_run(
        p_run_id => p_run_id,
        p_canonical_symbol => p_canonical_symbol,
        p_timeframe => p_timeframe,
        p_task_kind => 'rollup',
        p_started_at => p_started_at,
        p_outcome => 'success',
        p_bars_written => (v_result ->> 'bars_written')::bigint,
        p_cursor_from => p_cursor,
        p_cursor_to => (v_result ->> 'cursor_to')::timestamptz
    );
    RETURN v_result;
END
$$;

COMMENT ON FUNCTION tickagg.agg_run_rollup(text, text, uuid, timestamptz, uuid, timestamptz, integer) IS
'One claimed rollup run: catch-up, agg_finish and the run log row in one call (one statement, one transaction).';
