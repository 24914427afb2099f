-- Operator switch for tasks (`tickagg tasks enable|disable`). NULL p_timeframe /
-- p_task_kind = every task of the symbol. Disabling records disabled_by_user, so
-- sync_agg_state_from_registry and sync_export_tasks leave the task off; enabling
-- clears it and turns an auto-disabled optional task (status 'disabled') back to
-- idle, due at once. A hard_failed task stays hard_failed (see agg_task_reset).
-- A running task finishes its current run either way (the lease is not touched).
-- Enabling rollup tasks enables their indicators tasks too, which sync turned
-- off with them (an indicators task is on exactly when its rollup is), unless
-- the operator disabled those themselves or indicators are off (indicators_enabled).
CREATE OR REPLACE FUNCTION tickagg.agg_task_set_enabled(
    p_canonical_symbol text,
    p_timeframe text DEFAULT NULL,
    p_task_kind text DEFAULT NULL,
    p_enabled boolean DEFAULT true
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_tasks jsonb;
BEGIN
    IF p_canonical_symbol IS NULL OR p_enabled IS NULL THEN
        RAISE EXCEPTION 'symbol and enabled flag are required'
            USING ERRCODE = 'TK004', HINT = 'Pass a canonical symbol and true (enable) or false (disable).';
    END IF;

    WITH changed AS (
        UPDATE tickagg.data_agg_state AS s SET
            enabled = p_enabled,
            disabled_by_user = NOT p_enabled,
            status = CASE WHEN p_enabled AND s.status = 'disabled' THEN 'idle' ELSE s.status END,
            hard_fail_streak = CASE WHEN p_enabled AND s.status = 'disabled' THEN 0 ELSE s.hard_fail_streak END,
            next_run_at = CASE WHEN p_enabled THEN least(s.next_run_at, now()) ELSE s.next_run_at END,
            updated_at = now()
        WHERE
            s.canonical_symbol = p_canonical_symbol
            AND (p_timeframe IS NULL OR s.timeframe = p_timeframe)
            AND (
                p_task_kind IS NULL OR s.task_kind = p_task_kind
                OR (
                    p_enabled AND p_task_kind = 'rollup' AND s.task_kind = 'indicators'
                    AND NOT s.enabled AND NOT s.disabled_by_user
                    AND tickagg.setting('indicators_enabled')::boolean
                )
            )
        RETURNING s.timeframe, s.task_kind, s.status, s.enabled
    )
    SELECT jsonb_agg(to_jsonb(c) ORDER BY c.timeframe, c.task_kind) INTO v_tasks FROM changed AS c;

    IF v_tasks IS NULL THEN
        RAISE EXCEPTION 'no task for % (timeframe %, kind %)',
            p_canonical_symbol, coalesce(p_timeframe, 'any'), coalesce(p_task_kind, 'any')
            USING ERRCODE = 'TK006',
                  HINT = 'See tickagg.task_status for the tasks that exist; `tickagg sync` creates them from the registry.';
    END IF;
    IF p_enabled THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;

    RETURN jsonb_build_object(
        'success', true, 'enabled', p_enabled, 'tasks_changed', jsonb_array_length(v_tasks), 'tasks', v_tasks
    );
END
$$;

COMMENT ON FUNCTION tickagg.agg_task_set_enabled(text, text, text, boolean) IS
'Enable or disable tasks of a symbol (NULL timeframe/kind = all); a disable is remembered in disabled_by_user so sync keeps it off.';
