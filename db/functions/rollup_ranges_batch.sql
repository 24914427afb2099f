-- rollup_ranges for many symbols of one timeframe in one statement: every bucket
-- of p_timeframe starting in p_ranges[i] of p_canonical_symbols[i] is upserted
-- (a revision only when content changed) and bars whose source vanished are
-- soft-deleted, as rollup_ranges does for one symbol. It serves batches of live
-- and late runs (agg_run_rollup_batch): a few buckets per symbol, where one
-- statement per symbol was most of a run's cost. Bars come from aggregate_buckets,
-- the one definition of a bucket. Returns each symbol's counts.
CREATE OR REPLACE FUNCTION tickagg.rollup_ranges_batch(
    p_timeframe text,
    p_canonical_symbols text[],
    p_ranges tstzmultirange[]
)
RETURNS TABLE (
    canonical_symbol text,
    buckets_with_data bigint,
    bars_written bigint,
    partial_bars bigint,
    bars_deleted bigint
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
-- As rollup_ranges for a few buckets: a cached plan of index lookups per symbol,
-- never a scan, merge or hash join over every symbol's bars.
SET jit = off
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_mergejoin = off
SET enable_hashjoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_source_timeframe text;
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_ranges) THEN
        RAISE EXCEPTION 'rollup_ranges_batch: % symbols but % ranges',
            cardinality(p_canonical_symbols), cardinality(p_ranges)
            USING ERRCODE = 'TK004', HINT = 'Pass one multirange per symbol.';
    END IF;
    SELECT t.source_timeframe INTO v_source_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    RETURN QUERY
    WITH aggregated AS MATERIALIZED (
        SELECT l.symbol, a.*
        FROM unnest(p_canonical_symbols, p_ranges) AS l (symbol, ranges)
        CROSS JOIN LATERAL tickagg.aggregate_buckets(l.symbol, p_timeframe, v_source_timeframe, l.ranges) AS a
    ),
    upserted AS (
        INSERT INTO tickagg.derived_data_bars AS d (
            canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
            trade_count, source_candles, expected_candles, quality_score, is_partial
        )
        SELECT
            a.symbol, p_timeframe, a.bucket_start, a.bucket_end, a.open, a.high, a.low, a.close,
            a.volume, a.vwap, a.trade_count, a.source_candles, a.expected_candles, a.quality_score, a.is_partial
        FROM aggregated AS a
        -- key order: each symbol's index pages are visited once, in order
        ORDER BY a.symbol, a.bucket_start
        ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
            bucket_end = excluded.bucket_end,
            open = excluded.open,
            high = excluded.high,
            low = excluded.low,
            close = excluded.close,
            volume = excluded.volume,
            vwap = excluded.vwap,
            trade_count = excluded.trade_count,
            source_candles = excluded.source_candles,
            expected_candles = excluded.expected_candles,
            quality_score = excluded.quality_score,
            is_partial = excluded.is_partial,
            derivation_version = d.derivation_version + 1,
            deleted_at = NULL,
            change_no = nextval('tickagg.bar_change_seq'),
            updated_at = now()
        WHERE
            d.deleted_at IS NOT NULL
            OR (
                d.bucket_end, d.open, d.high, d.low, d.close, d.trade_count,
                d.source_candles, d.expected_candles, d.quality_score, d.is_partial
            ) IS DISTINCT FROM (
                excluded.bucket_end, excluded.open, excluded.high, excluded.low, excluded.close,
                excluded.trade_count, excluded.source_candles,
                excluded.expected_candles, excluded.quality_score, excluded.is_partial
            )
            -- sums: only beyond summation-order rounding
            OR tickagg.float_differs(d.volume, excluded.volume)
            OR tickagg.float_differs(d.vwap, excluded.vwap)
        RETURNING d.canonical_symbol, d.is_partial
    ),
    removed AS (
        UPDATE tickagg.derived_data_bars AS d SET
            deleted_at = now(),
            derivation_version = d.derivation_version + 1,
            change_no = nextval('tickagg.bar_change_seq'),
            updated_at = now()
        -- each range's bars by their own index lookup, fenced (OFFSET 0)
        FROM (
            SELECT x.canonical_symbol, x.ts_utc
            FROM unnest(p_canonical_symbols, p_ranges) AS l (symbol, ranges)
            CROSS JOIN LATERAL unnest(l.ranges) AS r (span)
            CROSS JOIN LATERAL (
                SELECT b.canonical_symbol, b.ts_utc
                FROM tickagg.derived_data_bars AS b
                WHERE
                    b.canonical_symbol = l.symbol
                    AND b.timeframe = p_timeframe
                    AND b.ts_utc >= lower(r.span)
                    AND b.ts_utc < upper(r.span)
                    AND b.deleted_at IS NULL
                OFFSET 0
            ) AS x
            WHERE NOT EXISTS (
                SELECT 1 FROM aggregated AS a WHERE a.symbol = x.canonical_symbol AND a.bucket_start = x.ts_utc
            )
            OFFSET 0
        ) AS gone
        WHERE d.canonical_symbol = gone.canonical_symbol AND d.timeframe = p_timeframe AND d.ts_utc = gone.ts_utc
        RETURNING d.canonical_symbol
    )
    -- counted per symbol once, then looked up (joins are off, and a nested loop
    -- over every symbol's rows would grow with the square of the batch)
    SELECT
        l.symbol,
        coalesce((c.buckets ->> l.symbol)::bigint, 0),
        coalesce((c.written ->> l.symbol)::bigint, 0),
        coalesce((c.partial ->> l.symbol)::bigint, 0),
        coalesce((c.deleted ->> l.symbol)::bigint, 0)
    FROM unnest(p_canonical_symbols) AS l (symbol)
    CROSS JOIN (
        SELECT
            (SELECT jsonb_object_agg(n.symbol, n.n) FROM (
                SELECT a.symbol, count(*) AS n FROM aggregated AS a GROUP BY a.symbol
            ) AS n) AS buckets,
            (SELECT jsonb_object_agg(n.canonical_symbol, n.n) FROM (
                SELECT u.canonical_symbol, count(*) AS n FROM upserted AS u GROUP BY u.canonical_symbol
            ) AS n) AS written,
            (SELECT jsonb_object_agg(n.canonical_symbol, n.n) FROM (
                SELECT u.canonical_symbol, count(*) AS n FROM upserted AS u WHERE u.is_partial
                GROUP BY u.canonical_symbol
            ) AS n) AS partial,
            (SELECT jsonb_object_agg(n.canonical_symbol, n.n) FROM (
                SELECT x.canonical_symbol, count(*) AS n FROM removed AS x GROUP BY x.canonical_symbol
            ) AS n) AS deleted
    ) AS c;
END
$$;

COMMENT ON FUNCTION tickagg.rollup_ranges_batch(text, text[], tstzmultirange[]) IS
'Recompute one timeframe''s derived bars of many symbols, each in its ranges, in one statement; returns counts per symbol.';
