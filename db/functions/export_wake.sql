-- Make the export tasks of symbols whose bars changed due: export_interval after
-- the first change (changes in between go in the same run), never sooner than
-- that and never when nothing changed (agg_finish leaves an export task asleep).
-- A task running now may miss the change: it runs again at once (agg_finish sees
-- next_run_at moved into its run). Rows are locked in symbol order, and callers
-- lock export rows before any other task row of a write, so writers never
-- deadlock on them.
CREATE OR REPLACE FUNCTION tickagg.export_wake(p_symbols text[])
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    WITH to_wake AS (
        SELECT s.canonical_symbol
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = ANY(p_symbols) AND s.timeframe = '1m' AND s.task_kind = 'export' AND s.enabled
            AND (
                (s.status = 'idle' AND s.next_run_at > clock_timestamp() + s.run_interval)
                OR (s.status = 'running' AND s.next_run_at <= s.running_started_at_utc)
            )
        ORDER BY s.canonical_symbol
        FOR NO KEY UPDATE OF s
    )
    UPDATE tickagg.data_agg_state AS s SET
        next_run_at = CASE WHEN s.status = 'running' THEN clock_timestamp() ELSE clock_timestamp() + s.run_interval END
    FROM to_wake AS w
    WHERE s.canonical_symbol = w.canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export'
$$;

COMMENT ON FUNCTION tickagg.export_wake(text[]) IS
'Make the export tasks of these symbols due export_interval after a change (at once if running).';
