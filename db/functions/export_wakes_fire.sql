-- Deferred constraint trigger on export_wakes_pending: as a write commits, the
-- export tasks of the symbols it changed become due export_interval after the
-- first change (changes in between go in the same run), never sooner and never
-- when nothing changed (agg_finish leaves an export task asleep). An idle task's
-- row is locked (and kept due) until the commit also when it is due already, so
-- no run can be claimed between here and the commit and miss the change. A task
-- running now may miss it: it runs again at once (agg_finish sees next_run_at
-- moved into its run). Rows are locked in symbol order.
CREATE OR REPLACE FUNCTION tickagg.export_wakes_fire()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    WITH to_wake AS (
        SELECT s.canonical_symbol
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = ANY(NEW.canonical_symbols) AND s.timeframe = '1m' AND s.task_kind = 'export'
            AND s.enabled
            AND (s.status = 'idle' OR (s.status = 'running' AND s.next_run_at <= s.running_started_at_utc))
        ORDER BY s.canonical_symbol
        FOR NO KEY UPDATE OF s
    )
    UPDATE tickagg.data_agg_state AS s SET
        next_run_at = CASE
            WHEN s.status = 'running' THEN clock_timestamp()
            ELSE least(s.next_run_at, clock_timestamp() + s.run_interval)
        END
    FROM to_wake AS w
    WHERE s.canonical_symbol = w.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export';
    DELETE FROM tickagg.export_wakes_pending AS p WHERE p.wake_id = NEW.wake_id;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.export_wakes_fire() IS
'Deferred trigger: make the export tasks of a committing write''s symbols due (export_wake queued them).';
