-- Record one task execution in ops_runlog (the runner role cannot write tables).
-- Called in the transaction that finishes the task (agg_finish), so a rolled-back
-- success leaves no row. Retention: each call first deletes up to 1000 rows older
-- than the runlog_retention setting; when nothing is expired that is one probe of
-- idx_ops_runlog_started (the oldest row). SKIP LOCKED: concurrent runners never wait on each other.
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
    v_cutoff timestamptz;
    v_pruned bigint := 0;
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('success', 'transient', 'hard', 'lease_lost') THEN
        RAISE EXCEPTION 'unknown run outcome %', p_outcome
            USING ERRCODE = 'TK004', HINT = 'Use success, transient, hard or lease_lost.';
    END IF;
    IF p_run_id IS NULL OR p_started_at IS NULL THEN
        RAISE EXCEPTION 'run id and start time are required'
            USING ERRCODE = 'TK004', HINT = 'Pass the run id the runner logs and when the run started.';
    END IF;

    v_cutoff := now() - coalesce(tickagg.setting('runlog_retention'), '7 days')::interval;
    -- min() has one plan whatever the cutoff; the generic plan of "EXISTS ... <
    -- v_cutoff" guessed a third of the table matched and scanned all of it per run
    IF (SELECT min(o.started_at) FROM tickagg.ops_runlog AS o) < v_cutoff THEN
        DELETE FROM tickagg.ops_runlog AS o
        WHERE o.run_id IN (
            SELECT x.run_id FROM tickagg.ops_runlog AS x
            WHERE x.started_at < v_cutoff
            ORDER BY x.started_at
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        );
        GET DIAGNOSTICS v_pruned = ROW_COUNT;
    END IF;

    INSERT INTO tickagg.ops_runlog (
        run_id, canonical_symbol, timeframe, task_kind, started_at, finished_at, outcome,
        bars_written, cursor_from, cursor_to, error
    ) VALUES (
        p_run_id, p_canonical_symbol, p_timeframe, p_task_kind, p_started_at, clock_timestamp(), p_outcome,
        coalesce(p_bars_written, 0), p_cursor_from, p_cursor_to, left(p_error, 2000)
    );
    RETURN jsonb_build_object('run_id', p_run_id, 'pruned', v_pruned);
END
$$;

COMMENT ON FUNCTION tickagg.ops_log_run(uuid, text, text, text, timestamptz, text, bigint, timestamptz, timestamptz, text) IS
'Append one task execution to ops_runlog and delete rows older than the runlog_retention setting.';
