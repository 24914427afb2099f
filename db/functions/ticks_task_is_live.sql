-- Whether a ticks_1m task may run in a batch (agg_claim_batch): its cursor is a
-- few minutes behind p_now, and no late ticks wait to be re-aggregated. When a
-- minute closes, every tick-fed symbol of a market is in this state at once, and
-- one statement (agg_run_ticks_batch) writes all their bars. A task catching up
-- (after an outage, a first start) or with late minutes runs alone, through
-- ticks_aggregate_minutes.
CREATE OR REPLACE FUNCTION tickagg.ticks_task_is_live(
    p_canonical_symbol text,
    p_cursor timestamptz,
    p_now timestamptz
)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT
        p_cursor >= p_now - interval '15 minutes'
        AND NOT EXISTS (
            SELECT 1
            FROM tickagg.agg_invalidations AS i
            WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = '1m'
        )
$$;

COMMENT ON FUNCTION tickagg.ticks_task_is_live(text, timestamptz, timestamptz) IS
'Whether a ticks_1m task is live (cursor within 15 minutes of now, no late minutes queued) and so may run in a batch.';
