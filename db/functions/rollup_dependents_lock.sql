-- The write triggers (invalidate_from_data_bars, derived_bars_changed) record a
-- dirty span for a rollup task built on what they wrote only when the task
-- needs it: the span reaches behind its cursor, or the task is not idle (a run
-- under way may not see the write and move its cursor past it). What they read
-- of the task must stay true until the write commits, so they first lock the
-- idle task rows here, FOR KEY SHARE in key order: claims (FOR UPDATE SKIP
-- LOCKED) pass a locked task over, and its status and cursor change only through
-- FOR UPDATE. A task that is not idle is not locked (its runner's finish would
-- wait for the writer, which may wait for that runner's export row: a deadlock),
-- nor is one held FOR UPDATE now (SKIP LOCKED: a claim or a finish under way is
-- not waited for); the caller records every span for a task left out.
CREATE OR REPLACE FUNCTION tickagg.rollup_dependents_lock(p_symbols text[], p_source_timeframes text[])
RETURNS TABLE (canonical_symbol text, timeframe text)
LANGUAGE sql
VOLATILE
AS $$
    SELECT s.canonical_symbol, s.timeframe
    FROM unnest(p_symbols, p_source_timeframes) AS c (canonical_symbol, source_timeframe)
    INNER JOIN tickagg.timeframes AS t ON t.source_timeframe = c.source_timeframe
    INNER JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
    WHERE s.status = 'idle'
    ORDER BY s.canonical_symbol, s.timeframe
    FOR KEY SHARE OF s SKIP LOCKED
$$;

COMMENT ON FUNCTION tickagg.rollup_dependents_lock(text[], text[]) IS
'Key-share lock the idle rollup tasks built on these (symbol, source timeframe) pairs, skipping rows held FOR UPDATE; returns the ones locked.';
