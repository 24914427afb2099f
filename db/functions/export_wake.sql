-- Make the export tasks of symbols whose bars changed due, as the write commits:
-- queued here, done by export_wakes_fire (a deferred trigger). Woken while the
-- write was still open, a task that was due already could be claimed before the
-- commit, miss the change (the horizon stops below it) and go back to sleep with
-- it unexported until the idle recheck; woken by locking its row at once, every
-- other write of the symbol (an ingest's other part, a rollup of another level)
-- waited for this one to commit. At the commit the row is locked only for the
-- instant before it.
CREATE OR REPLACE FUNCTION tickagg.export_wake(p_symbols text[])
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    -- (nothing queued where no export task exists: a database without ClickHouse)
    INSERT INTO tickagg.export_wakes_pending (canonical_symbols)
    SELECT p_symbols
    WHERE EXISTS (
        SELECT FROM tickagg.data_agg_state AS s
        WHERE s.canonical_symbol = ANY(p_symbols) AND s.timeframe = '1m' AND s.task_kind = 'export'
            AND s.enabled
    )
$$;

COMMENT ON FUNCTION tickagg.export_wake(text[]) IS
'Make the export tasks of these symbols due export_interval after a change, when the change commits.';
