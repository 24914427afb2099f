-- Whether a task may start or join a batch (agg_claim_batch): it has live or
-- late work, a few steps of it, not a catch-up or a backfill, which runs alone so
-- that a batch never grows into one long statement holding hundreds of tasks.
--   rollup      its source holds at most 16 of its steps past its cursor
--               (rollup_has_few_buckets_pending)
--   indicators  likewise, its source being the bars of its own timeframe
--   ticks_1m    its cursor is at most 16 minutes behind p_now
-- SQL, so it is inlined into the claim.
CREATE OR REPLACE FUNCTION tickagg.batch_has_little_pending(
    p_task_kind text,
    p_canonical_symbol text,
    p_timeframe text,
    p_cursor timestamptz,
    p_now timestamptz
)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE p_task_kind
        WHEN 'ticks_1m' THEN p_cursor >= p_now - interval '16 minutes'
        ELSE (
            SELECT tickagg.rollup_has_few_buckets_pending(
                p_canonical_symbol,
                CASE p_task_kind WHEN 'rollup' THEN t.source_timeframe ELSE t.timeframe END,
                p_cursor,
                t.step
            )
            FROM tickagg.timeframes AS t
            WHERE t.timeframe = p_timeframe
        )
    END
$$;

COMMENT ON FUNCTION tickagg.batch_has_little_pending(text, text, text, timestamptz, timestamptz) IS
'True when a rollup, indicators or ticks_1m task has a few steps of live or late work: it may start or join a batch.';
