-- Materialise every bucket of symbol i and timeframe i whose start lies in
-- ranges i (p_canonical_symbols[i], p_timeframes[i], p_ranges[i]), in one
-- statement: new and changed bars are upserted (a revision is counted only when
-- content changed), bars whose source vanished are soft-deleted. The ranges must
-- start and end on bucket boundaries or in closed market time. Each timeframe is
-- read from its own source timeframe, or from p_source_timeframe for all of them:
-- a late-data cascade (rollup_cascade_dirty) rebuilds the dirty buckets of levels
-- that nest in one source in one statement (5m to 1h from 1m, then 4h to 1w from
-- 1h; the bars are the same, sums can differ in float rounding only, which the
-- revision check ignores), and a batch of live runs (agg_run_rollup_batch) one
-- timeframe of many symbols. The one definition of writing derived bars.
-- Returns one row of counts per element (a symbol and timeframe come once).
CREATE OR REPLACE FUNCTION tickagg.rollup_ranges(
    p_canonical_symbols text[],
    p_timeframes text[],
    p_ranges tstzmultirange[],
    p_source_timeframe text DEFAULT NULL
)
RETURNS TABLE (
    canonical_symbol text,
    timeframe text,
    buckets_with_data bigint,
    bars_written bigint,
    partial_bars bigint,
    bars_deleted bigint
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
-- The statement is cheap per row but its estimates are large; JIT compiling it
-- cost more than running it (0.7 s a call in benchmarks/bench_catchup.py).
SET jit = off
SET work_mem = '64MB'
-- the best plan depends on how wide p_ranges is: cached for the few buckets of
-- a late bar or a live minute, planned per call for anything wider (below)
SET plan_cache_mode = force_generic_plan
-- Every table read here is read by a short index range per symbol. A size
-- estimate taken while derived_data_bars was empty (a fresh install, the start of
-- a rebuild) must not turn that into a table scan repeated per run of sessions.
SET enable_seqscan = off
SET enable_mergejoin = on
SET enable_hashjoin = on
AS $$
#variable_conflict use_column
DECLARE
    v_few_buckets boolean;
    v_inserted boolean := false;
    -- counts keyed by timeframe || '/' || symbol (no timeframe code has a '/'),
    -- looked up per element: with the few-bucket plan's joins off, joining the
    -- elements to the written bars was a nested loop over both
    v_buckets jsonb;
    v_written jsonb;
    v_partial jsonb;
    v_deleted jsonb;
BEGIN
    IF
        cardinality(p_timeframes) IS DISTINCT FROM cardinality(p_ranges)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_ranges)
    THEN
        RAISE EXCEPTION 'rollup_ranges: % symbols and % timeframes but % ranges',
            cardinality(p_canonical_symbols), cardinality(p_timeframes), cardinality(p_ranges)
            USING ERRCODE = 'TK004', HINT = 'Pass one symbol, timeframe and multirange per element.';
    END IF;

    -- A late bar or a closing live minute touches a bucket or two: planning the
    -- statements below took 1.5 ms of the 2.3 ms such a call cost, and their
    -- cached generic plan (index lookups) is right for a few buckets. It is not
    -- for a catch-up or a backfill (a full catch-up ran 5-9x slower), which keep
    -- custom plans. A generic plan cannot see how few ranges there are, so it is
    -- told: a nested loop of index lookups per range, never a merge or hash join
    -- over the symbol's every bar (130 ms). The function's SET clause restores
    -- all three settings on exit. This test itself is cached: planned per call it
    -- cost 0.1 ms.
    v_few_buckets := coalesce((
        SELECT bool_and(tickagg.few_buckets(l.ranges, t.step))
        FROM unnest(p_timeframes, p_ranges) AS l (timeframe, ranges)
        INNER JOIN tickagg.timeframes AS t ON t.timeframe = l.timeframe
    ), false);
    IF NOT v_few_buckets THEN
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    ELSE
        PERFORM set_config('enable_mergejoin', 'off', true);
        PERFORM set_config('enable_hashjoin', 'off', true);
    END IF;

    -- Catch-up past the cursor finds no bars of its own yet: then a plain insert
    -- does (an upsert costs 70% more per row) and nothing can need soft-deleting.
    -- A bar that a concurrent call commits meanwhile makes the insert fail on the
    -- key; the upsert below then takes over, as if the probe had seen it. For a
    -- few buckets the probe would cost more than the upsert saves.
    IF NOT v_few_buckets AND NOT EXISTS (
        SELECT 1
        FROM unnest(p_canonical_symbols, p_timeframes, p_ranges) AS l (symbol, timeframe, ranges)
        CROSS JOIN LATERAL unnest(l.ranges) AS r (span)
        CROSS JOIN LATERAL (
            SELECT 1
            FROM tickagg.derived_data_bars AS d
            WHERE
                d.canonical_symbol = l.symbol
                AND d.timeframe = l.timeframe
                AND d.ts_utc >= lower(r.span)
                AND d.ts_utc < upper(r.span)
            LIMIT 1
        ) AS e
    ) THEN
        BEGIN
            WITH inserted AS (
                INSERT INTO tickagg.derived_data_bars (
                    canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
                    trade_count, source_candles, expected_candles, quality_score, is_partial
                )
                SELECT
                    l.symbol, l.timeframe, a.bucket_start, a.bucket_end, a.open, a.high, a.low,
                    a.close, a.volume, a.vwap, a.trade_count, a.source_candles, a.expected_candles,
                    a.quality_score, a.is_partial
                FROM unnest(p_canonical_symbols, p_timeframes, p_ranges) AS l (symbol, timeframe, ranges)
                INNER JOIN tickagg.timeframes AS t ON t.timeframe = l.timeframe
                CROSS JOIN LATERAL tickagg.aggregate_buckets(
                    l.symbol, l.timeframe, coalesce(p_source_timeframe, t.source_timeframe), l.ranges
                ) AS a
                -- in key order the index grows at one edge and the next level
                -- reads the bars from neighbouring heap pages
                ORDER BY l.symbol, l.timeframe, a.bucket_start
                RETURNING canonical_symbol, timeframe, is_partial
            )
            SELECT jsonb_object_agg(n.k, n.bars), jsonb_object_agg(n.k, n.partial)
            INTO v_written, v_partial
            FROM (
                SELECT
                    i.timeframe || '/' || i.canonical_symbol AS k,
                    count(*) AS bars,
                    count(*) FILTER (WHERE i.is_partial) AS partial
                FROM inserted AS i
                GROUP BY i.canonical_symbol, i.timeframe
            ) AS n;
            v_buckets := v_written;
            v_inserted := true;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- the upsert below takes over
        END;
    END IF;

    IF NOT v_inserted THEN
        WITH aggregated AS MATERIALIZED (
            SELECT l.symbol, l.timeframe, a.*
            FROM unnest(p_canonical_symbols, p_timeframes, p_ranges) AS l (symbol, timeframe, ranges)
            INNER JOIN tickagg.timeframes AS t ON t.timeframe = l.timeframe
            CROSS JOIN LATERAL tickagg.aggregate_buckets(
                l.symbol, l.timeframe, coalesce(p_source_timeframe, t.source_timeframe), l.ranges
            ) AS a
        ),
        upserted AS (
            INSERT INTO tickagg.derived_data_bars AS d (
                canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
                trade_count, source_candles, expected_candles, quality_score, is_partial
            )
            SELECT
                a.symbol, a.timeframe, a.bucket_start, a.bucket_end, a.open, a.high, a.low, a.close,
                a.volume, a.vwap, a.trade_count, a.source_candles, a.expected_candles, a.quality_score,
                a.is_partial
            FROM aggregated AS a
            -- key order: each symbol's index pages are visited once, in order
            ORDER BY a.symbol, a.timeframe, a.bucket_start
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
            RETURNING d.canonical_symbol, d.timeframe, d.is_partial
        ),
        removed AS (
            UPDATE tickagg.derived_data_bars AS d SET
                deleted_at = now(),
                derivation_version = d.derivation_version + 1,
                change_no = nextval('tickagg.bar_change_seq'),
                updated_at = now()
            -- each range's bars by their own index lookup, fenced (OFFSET 0): left to
            -- itself the planner read every bar of the symbol to find them (250 ms)
            FROM (
                SELECT x.canonical_symbol, x.timeframe, x.ts_utc
                FROM unnest(p_canonical_symbols, p_timeframes, p_ranges) AS l (symbol, timeframe, ranges)
                CROSS JOIN LATERAL unnest(l.ranges) AS r (span)
                CROSS JOIN LATERAL (
                    SELECT b.canonical_symbol, b.timeframe, b.ts_utc
                    FROM tickagg.derived_data_bars AS b
                    WHERE
                        b.canonical_symbol = l.symbol
                        AND b.timeframe = l.timeframe
                        AND b.ts_utc >= lower(r.span)
                        AND b.ts_utc < upper(r.span)
                        AND b.deleted_at IS NULL
                    OFFSET 0
                ) AS x
                WHERE NOT EXISTS (
                    SELECT 1 FROM aggregated AS a
                    WHERE a.symbol = x.canonical_symbol AND a.timeframe = x.timeframe AND a.bucket_start = x.ts_utc
                )
                OFFSET 0
            ) AS gone
            WHERE
                d.canonical_symbol = gone.canonical_symbol AND d.timeframe = gone.timeframe
                AND d.ts_utc = gone.ts_utc
            RETURNING d.canonical_symbol, d.timeframe
        )
        SELECT
            (
                SELECT jsonb_object_agg(n.k, n.n) FROM (
                    SELECT a.timeframe || '/' || a.symbol AS k, count(*) AS n
                    FROM aggregated AS a GROUP BY a.symbol, a.timeframe
                ) AS n
            ),
            (
                SELECT jsonb_object_agg(n.k, n.n) FROM (
                    SELECT u.timeframe || '/' || u.canonical_symbol AS k, count(*) AS n
                    FROM upserted AS u GROUP BY u.canonical_symbol, u.timeframe
                ) AS n
            ),
            (
                SELECT jsonb_object_agg(n.k, n.n) FROM (
                    SELECT u.timeframe || '/' || u.canonical_symbol AS k, count(*) AS n
                    FROM upserted AS u WHERE u.is_partial GROUP BY u.canonical_symbol, u.timeframe
                ) AS n
            ),
            (
                SELECT jsonb_object_agg(n.k, n.n) FROM (
                    SELECT x.timeframe || '/' || x.canonical_symbol AS k, count(*) AS n
                    FROM removed AS x GROUP BY x.canonical_symbol, x.timeframe
                ) AS n
            )
        INTO v_buckets, v_written, v_partial, v_deleted;
    END IF;

    RETURN QUERY
    SELECT
        l.symbol,
        l.timeframe,
        coalesce((v_buckets ->> (l.timeframe || '/' || l.symbol))::bigint, 0),
        coalesce((v_written ->> (l.timeframe || '/' || l.symbol))::bigint, 0),
        coalesce((v_partial ->> (l.timeframe || '/' || l.symbol))::bigint, 0),
        coalesce((v_deleted ->> (l.timeframe || '/' || l.symbol))::bigint, 0)
    FROM unnest(p_canonical_symbols, p_timeframes) AS l (symbol, timeframe);
END
$$;

COMMENT ON FUNCTION tickagg.rollup_ranges(text[], text[], tstzmultirange[], text) IS
'Recompute the derived bars whose buckets start in each symbol''s and timeframe''s ranges, set-based, in one statement; counts per element.';
