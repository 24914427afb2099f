-- `tickagg tasks reset`: put tasks of a symbol (NULL p_timeframe / p_task_kind =
-- all of them) back to idle, due now: streaks, lease, claim and last_error are
-- cleared; the cursor, enabled flag and totals are kept. A hard_failed task (a
-- mandatory task that failed hard_fail_threshold times) and a running task whose
-- lease is still live are only reset with p_force: the first needs an explicit
-- acknowledgement of the failure, the second takes the task from a runner
-- (whose agg_finish then fails with TK001 and writes nothing).
CREATE OR REPLACE FUNCTION tickagg.agg_task_reset(
    p_canonical_symbol text,
    p_timeframe text DEFAULT NULL,
    p_task_kind text DEFAULT NULL,
    p_force boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_blocked record;
    v_tasks jsonb;
BEGIN
    IF p_canonical_symbol IS NULL THEN
        RAISE EXCEPTION 'symbol is required'
            USING ERRCODE = 'TK004', HINT = 'Pass a canonical symbol.';
    END IF;

    PERFORM 1
    FROM tickagg.data_agg_state AS s
    WHERE
        s.canonical_symbol = p_canonical_symbol
        AND (p_timeframe IS NULL OR s.timeframe = p_timeframe)
        AND (p_task_kind IS NULL OR s.task_kind = p_task_kind)
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no task for % (timeframe %, kind %)',
            p_canonical_symbol, coalesce(p_timeframe, 'any'), coalesce(p_task_kind, 'any')
            USING ERRCODE = 'TK006',
                  HINT = 'See tickagg.task_status for the tasks that exist; `tickagg sync` creates them from the registry.';
    END IF;

    IF NOT coalesce(p_force, false) THEN
        SELECT s.timeframe, s.task_kind, s.status, s.last_error INTO v_blocked
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = p_canonical_symbol
            AND (p_timeframe IS NULL OR s.timeframe = p_timeframe)
            AND (p_task_kind IS NULL OR s.task_kind = p_task_kind)
            AND (s.status = 'hard_failed' OR (s.status = 'running' AND s.lease_expires_at > now()))
        ORDER BY s.timeframe, s.task_kind
        LIMIT 1;
        IF FOUND AND v_blocked.status = 'hard_failed' THEN
            RAISE EXCEPTION 'task % % % is hard_failed: %',
                p_canonical_symbol, v_blocked.timeframe, v_blocked.task_kind, coalesce(v_blocked.last_error, '')
                USING ERRCODE = 'TK004',
                      HINT = 'Fix the cause, then acknowledge the failure explicitly: pass --force (p_force => true).';
        ELSIF FOUND THEN
            RAISE EXCEPTION 'task % % % is running under a live lease',
                p_canonical_symbol, v_blocked.timeframe, v_blocked.task_kind
                USING ERRCODE = 'TK004',
                      HINT = 'Wait for the run to finish, or pass --force (p_force => true) to take the task from its runner.';
        END IF;
    END IF;

    WITH changed AS (
        UPDATE tickagg.data_agg_state AS s SET
            status = 'idle',
            claim_token = NULL,
            lease_expires_at = NULL,
            running_started_at_utc = NULL,
            hard_fail_streak = 0,
            transient_fail_streak = 0,
            last_error = NULL,
            next_run_at = now(),
            updated_at = now()
        WHERE
            s.canonical_symbol = p_canonical_symbol
            AND (p_timeframe IS NULL OR s.timeframe = p_timeframe)
            AND (p_task_kind IS NULL OR s.task_kind = p_task_kind)
        RETURNING s.timeframe, s.task_kind, s.enabled, s.last_agg_bar_ts_utc AS cursor_ts
    )
    SELECT jsonb_agg(to_jsonb(c) ORDER BY c.timeframe, c.task_kind) INTO v_tasks FROM changed AS c;
    PERFORM pg_notify('tickagg_work', '');

    RETURN jsonb_build_object('success', true, 'tasks_reset', jsonb_array_length(v_tasks), 'tasks', v_tasks);
END
$$;

COMMENT ON FUNCTION tickagg.agg_task_reset(text, text, text, boolean) IS
'Reset tasks of a symbol to idle and due now (streaks, lease, last_error cleared; cursor kept); hard_failed or live-leased tasks need p_force.';
