-- Statement trigger on derived_data_bars: a changed bucket dirties the same span
-- of the timeframe built from it, which is how a correction cascades up to 1w.
CREATE OR REPLACE FUNCTION tickagg.invalidate_from_derived_bars()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
AS $$
DECLARE
    v_recorded bigint;
BEGIN
    -- INSERT ... ON CONFLICT DO UPDATE fires both the insert and the update
    -- trigger, one of them with no rows: that one has nothing to record.
    IF NOT EXISTS (SELECT 1 FROM changed_rows) THEN
        RETURN NULL;
    END IF;
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT c.canonical_symbol, t.timeframe, d.span
    FROM (
        SELECT
            r.canonical_symbol,
            r.timeframe,
            min(r.ts_utc) AS first_start,
            max(r.bucket_end) AS last_end,
            sum(r.bucket_end - r.ts_utc) AS covered
        FROM changed_rows AS r
        GROUP BY r.canonical_symbol, r.timeframe
    ) AS c
    INNER JOIN tickagg.timeframes AS t ON t.source_timeframe = c.timeframe
    INNER JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
    -- What a statement writes is mostly one stretch (a catch-up run, a backfill):
    -- its hull, holes included, is then recorded without sorting every row's range
    -- (range_agg cost 20 ms per 20,000 bars). Redoing a bucket in a hole changes
    -- nothing. Scattered writes keep their exact ranges.
    CROSS JOIN LATERAL unnest(
        CASE
            WHEN c.covered * 2 >= c.last_end - c.first_start
                THEN tstzmultirange(tstzrange(c.first_start, c.last_end))
            ELSE (
                SELECT range_agg(tstzrange(x.ts_utc, x.bucket_end))
                FROM changed_rows AS x
                WHERE x.canonical_symbol = c.canonical_symbol AND x.timeframe = c.timeframe
            )
        END
    ) AS d (span);
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    IF v_recorded > 0 THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.invalidate_from_derived_bars() IS
'Trigger: record dirty bucket spans of changed derived bars for the next timeframe up and notify runners.';
