-- Whether a rollup task's source holds at most 16 of its steps of bars past its
-- cursor (few_buckets' span): live and late work, which batches of tasks share
-- (agg_claim_batch). Also asked of an indicators task, whose source is the bars
-- of its own timeframe. More is a catch-up or a backfill, which runs alone, so a
-- batch never grows into one long statement holding hundreds of tasks. One index
-- probe of the source table; SQL, so it is inlined into the claim.
CREATE OR REPLACE FUNCTION tickagg.rollup_has_few_buckets_pending(
    p_canonical_symbol text,
    p_source_timeframe text,
    p_cursor timestamptz,
    p_step interval
)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN p_source_timeframe = '1m' THEN NOT EXISTS (
            SELECT 1
            FROM tickagg.data_bars AS b
            WHERE
                b.canonical_symbol = p_canonical_symbol
                AND b.timeframe = '1m'
                AND b.ts_utc >= p_cursor + p_step * 16
        )
        ELSE NOT EXISTS (
            SELECT 1
            FROM tickagg.derived_data_bars AS d
            WHERE
                d.canonical_symbol = p_canonical_symbol
                AND d.timeframe = p_source_timeframe
                AND d.ts_utc >= p_cursor + p_step * 16
        )
    END
$$;

COMMENT ON FUNCTION tickagg.rollup_has_few_buckets_pending(text, text, timestamptz, interval) IS
'True when a rollup task''s source has at most 16 steps of bars past its cursor: work a batch takes, not a backfill.';
