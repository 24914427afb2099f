-- Export tasks exist only where a ClickHouse target is configured: the runner
-- and `tickagg sync` / `tickagg export` call this when they have a ClickHouse
-- URL. One optional task per symbol active in the environment, on '1m', task
-- kind 'export', with the export_interval and export_priority settings; tasks of
-- symbols no longer wanted are disabled (cursor kept); tasks an operator disabled
-- (disabled_by_user) stay disabled. Returns jsonb counts.
CREATE OR REPLACE FUNCTION tickagg.sync_export_tasks(
    p_env text DEFAULT 'prod',
    p_start timestamptz DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_start timestamptz := coalesce(p_start, tickagg.setting('default_agg_start')::timestamptz);
    v_created bigint;
    v_updated bigint;
    v_disabled bigint;
BEGIN
    IF p_env IS NULL OR p_env NOT IN ('prod', 'test') THEN
        RAISE EXCEPTION 'unknown environment %', p_env
            USING ERRCODE = 'TK004', HINT = 'Use ''prod'' (registry.active) or ''test'' (registry.test_active).';
    END IF;
    WITH wanted AS MATERIALIZED (
        SELECT r.canonical_symbol
        FROM tickagg.core_asset_registry_all AS r
        WHERE CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
    ),
    created AS (
        INSERT INTO tickagg.data_agg_state (
            canonical_symbol, timeframe, timeframe_step, task_kind, is_mandatory, agg_start_utc,
            last_agg_bar_ts_utc, run_interval, task_priority
        )
        SELECT
            w.canonical_symbol, '1m', interval '1 minute', 'export', false, v_start, v_start,
            tickagg.setting('export_interval')::interval, tickagg.setting('export_priority')::integer
        FROM wanted AS w
        ON CONFLICT (canonical_symbol, timeframe, task_kind) DO NOTHING
        RETURNING 1
    ),
    updated AS (
        UPDATE tickagg.data_agg_state AS s SET enabled = true, updated_at = now()
        FROM wanted AS w
        WHERE
            NOT s.enabled AND NOT s.disabled_by_user
            AND s.canonical_symbol = w.canonical_symbol AND s.task_kind = 'export'
        RETURNING 1
    ),
    disabled AS (
        UPDATE tickagg.data_agg_state AS s SET enabled = false, updated_at = now()
        WHERE
            s.task_kind = 'export' AND s.enabled
            AND NOT EXISTS (SELECT 1 FROM wanted AS w WHERE w.canonical_symbol = s.canonical_symbol)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM updated), (SELECT count(*) FROM disabled)
    INTO v_created, v_updated, v_disabled;
    RETURN jsonb_build_object(
        'success', true, 'env', p_env, 'export_tasks_created', v_created,
        'export_tasks_updated', v_updated, 'export_tasks_disabled', v_disabled
    );
END
$$;

COMMENT ON FUNCTION tickagg.sync_export_tasks(text, timestamptz) IS
'Create, enable and disable the per-symbol ClickHouse export tasks for an environment; returns jsonb counts.';
