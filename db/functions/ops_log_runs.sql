-- Record task executions of one kind and timeframe in ops_runlog with one
-- INSERT (the runner role cannot write tables): a batch's runs (agg_finish_batch)
-- or one run (ops_log_run). Called in the transaction that finishes the tasks,
-- so a rolled-back success leaves no row. Retention: each call first deletes up
-- to 1000 rows older than the runlog_retention setting; when nothing is expired
-- that is one probe of idx_ops_runlog_started (the oldest row). SKIP LOCKED:
-- concurrent runners never wait on each other.
CREATE OR REPLACE FUNCTION tickagg.ops_log_runs(
    p_run_ids uuid[],
    p_canonical_symbols text[],
    p_timeframe text,
    p_task_kind text,
    p_started_at timestamptz,
    p_outcomes text[],
    p_bars_written bigint[],
    p_cursors_from timestamptz[],
    p_cursors_to timestamptz[],
    p_errors text[]
)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_cutoff timestamptz;
    v_pruned bigint := 0;
BEGIN
    IF EXISTS (
        SELECT 1 FROM unnest(p_outcomes) AS o (outcome)
        WHERE o.outcome IS NULL OR o.outcome NOT IN ('success', 'transient', 'hard', 'lease_lost')
    ) THEN
        RAISE EXCEPTION 'unknown run outcome in %', p_outcomes
            USING ERRCODE = 'TK004', HINT = 'Use success, transient, hard or lease_lost.';
    END IF;
    IF p_started_at IS NULL OR array_position(p_run_ids, NULL) IS NOT NULL THEN
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
    )
    SELECT
        r.run_id, r.canonical_symbol, p_timeframe, p_task_kind, p_started_at, clock_timestamp(), r.outcome,
        coalesce(r.bars_written, 0), r.cursor_from, r.cursor_to, left(r.error, 2000)
    FROM unnest(p_run_ids, p_canonical_symbols, p_outcomes, p_bars_written, p_cursors_from, p_cursors_to, p_errors)
        AS r (run_id, canonical_symbol, outcome, bars_written, cursor_from, cursor_to, error);
    RETURN v_pruned;
END
$$;

COMMENT ON FUNCTION tickagg.ops_log_runs(uuid[], text[], text, text, timestamptz, text[], bigint[], timestamptz[], timestamptz[], text[]) IS
'Append task executions of one kind and timeframe to ops_runlog in one INSERT and delete rows older than the runlog_retention setting.';
