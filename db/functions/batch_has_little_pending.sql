-- Whether a task may start or join a batch (agg_claim_batch): it has live or
-- late work, a few steps of it, not a catch-up or a backfill, which runs alone so
-- that a batch never grows into one long statement holding hundreds of tasks.
--   rollup      its source holds at most 16 of its steps past its cursor
--               (rollup_has_few_buckets_pending)
--   indicators  likewise, its source being the bars of its own timeframe
--   ticks_1m    its cursor is at most 16 minutes behind p_now
-- The caller passes the source timeframe and step (the same for the whole
-- batch): one plain expression, so it is inlined into the claim's WHERE (with a
-- lookup inside, it ran as a function call per candidate row: 8x slower claims).
CREATE OR REPLACE FUNCTION tickagg.batch_has_little_pending(
    p_task_kind text,
    p_canonical_symbol text,
    p_source_timeframe text,
    p_step interval,
    p_cursor timestamptz,
    p_now timestamptz
)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE p_task_kind
        WHEN 'ticks_1m' THEN p_cursor >= p_now - p_step * 16
        ELSE tickagg.rollup_has_few_buckets_pending(p_canonical_symbol, p_source_timeframe, p_cursor, p_step)
    END
$$;

COMMENT ON FUNCTION tickagg.batch_has_little_pending(text, text, text, interval, timestamptz, timestamptz) IS
'True when a rollup, indicators or ticks_1m task has a few steps of live or late work: it may start or join a batch.';
