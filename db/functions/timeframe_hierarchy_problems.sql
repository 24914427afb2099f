-- Rollup steps whose source buckets cannot nest inside the target's buckets.
-- Buckets are anchored at each session's open, so a fixed step nests when it is
-- a whole multiple of its source step; a day is built from fixed steps or minutes
-- and a week from days.
CREATE OR REPLACE FUNCTION tickagg.timeframe_hierarchy_problems()
RETURNS TABLE (timeframe text, source_timeframe text, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT t.timeframe, t.source_timeframe, p.problem
    FROM tickagg.timeframes AS t
    INNER JOIN tickagg.timeframes AS s ON s.timeframe = t.source_timeframe
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN t.bucket_kind = 'fixed' AND s.bucket_kind NOT IN ('fixed', 'minute')
                THEN 'a fixed-step timeframe can only be built from a fixed step or 1m'
            WHEN t.bucket_kind = 'fixed'
                AND extract(EPOCH FROM t.step)::bigint % extract(EPOCH FROM s.step)::bigint <> 0
                THEN format('step %s is not a multiple of %s', t.step, s.step)
            WHEN t.bucket_kind = 'day' AND s.bucket_kind NOT IN ('fixed', 'minute')
                THEN 'a trading day can only be built from intraday buckets'
            WHEN t.bucket_kind = 'week' AND s.bucket_kind <> 'day'
                THEN 'a trading week can only be built from trading days'
        END AS problem
    ) AS p
    WHERE p.problem IS NOT NULL
$$;

COMMENT ON FUNCTION tickagg.timeframe_hierarchy_problems() IS
'Each timeframe whose source timeframe''s buckets would not nest in its own, with the reason.';
