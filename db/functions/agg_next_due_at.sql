-- When the next task of an environment becomes due, so an idle runner can sleep
-- until then instead of polling: the earliest scheduled run, the earliest lease
-- expiry, or now() when a rollup has pending invalidations. Three index lookups,
-- whatever the number of tasks.
CREATE OR REPLACE FUNCTION tickagg.agg_next_due_at(p_env text)
RETURNS timestamptz
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    WITH env_symbols AS MATERIALIZED (
        SELECT r.canonical_symbol FROM tickagg.core_asset_registry_all AS r
        WHERE CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
    )
    SELECT least(
        (
            SELECT min(s.next_run_at) FROM tickagg.data_agg_state AS s
            WHERE
                s.enabled AND s.status = 'idle'
                AND s.canonical_symbol IN (SELECT e.canonical_symbol FROM env_symbols AS e)
        ),
        (
            SELECT min(s.lease_expires_at) FROM tickagg.data_agg_state AS s
            WHERE
                s.enabled AND s.status = 'running'
                AND s.canonical_symbol IN (SELECT e.canonical_symbol FROM env_symbols AS e)
        ),
        (
            SELECT now() FROM tickagg.agg_invalidations AS i
            INNER JOIN tickagg.data_agg_state AS s
                ON s.canonical_symbol = i.canonical_symbol AND s.timeframe = i.timeframe AND s.task_kind = 'rollup'
            WHERE
                s.enabled AND s.status = 'idle' AND s.transient_fail_streak = 0 AND s.hard_fail_streak = 0
                AND s.canonical_symbol IN (SELECT e.canonical_symbol FROM env_symbols AS e)
            LIMIT 1
        )
    )
$$;

COMMENT ON FUNCTION tickagg.agg_next_due_at(text) IS
'Earliest time a task of the environment becomes due (NULL when there are no tasks).';
