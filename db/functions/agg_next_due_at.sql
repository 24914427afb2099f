-- When the next task of an environment becomes due, so an idle runner can sleep
-- until then instead of polling; now() when something is due already.
CREATE OR REPLACE FUNCTION tickagg.agg_next_due_at(p_env text)
RETURNS timestamptz
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT min(w.wake_at)
    FROM (
        SELECT
            CASE
                WHEN s.status = 'running' THEN s.lease_expires_at
                WHEN s.transient_fail_streak = 0 AND s.hard_fail_streak = 0
                    AND EXISTS (
                        SELECT 1 FROM tickagg.agg_invalidations AS i
                        WHERE i.canonical_symbol = s.canonical_symbol AND i.timeframe = s.timeframe
                    ) THEN now()
                ELSE s.next_run_at
            END AS wake_at
        FROM tickagg.data_agg_state AS s
        INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
        WHERE
            s.enabled
            AND s.status IN ('idle', 'running')
            AND CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
    ) AS w
$$;

COMMENT ON FUNCTION tickagg.agg_next_due_at(text) IS
'Earliest time a task of the environment becomes due (NULL when there are no tasks).';
