-- Record one task execution in ops_runlog (the runner role cannot write tables):
-- ops_log_runs with one row, which also keeps the retention.
CREATE OR REPLACE FUNCTION tickagg.ops_log_run(
    p_run_id uuid,
    p_canonical_symbol text,
    p_timeframe text,
    p_task_kind text,
    p_started_at timestamptz,
    p_outcome text,
    p_bars_written bigint DEFAULT 0,
    p_cursor_from timestamptz DEFAULT NULL,
    p_cursor_to timestamptz DEFAULT NULL,
    p_error text DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_pruned bigint;
BEGIN
    v_pruned := tickagg.ops_log_runs(
        ARRAY[p_run_id], ARRAY[p_canonical_symbol], p_timeframe, p_task_kind, p_started_at, ARRAY[p_outcome],
        ARRAY[p_bars_written], ARRAY[p_cursor_from], ARRAY[p_cursor_to], ARRAY[p_error]
    );
    RETURN jsonb_build_object('run_id', p_run_id, 'pruned', v_pruned);
END
$$;

COMMENT ON FUNCTION tickagg.ops_log_run(uuid, text, text, text, timestamptz, text, bigint, timestamptz, timestamptz, text) IS
'Append one task execution to ops_runlog and delete rows older than the runlog_retention setting.';
