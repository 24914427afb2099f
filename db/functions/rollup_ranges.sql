-- Materialise every bucket of one derived timeframe whose start lies in p_ranges,
-- in one statement: new and changed bars are upserted (a revision is counted only
-- when content changed), bars whose source vanished are soft-deleted. The ranges
-- must start and end on bucket boundaries or in closed market time.
CREATE OR REPLACE FUNCTION tickagg.rollup_ranges(
    p_canonical_symbol text,
    p_timeframe text,
    p_ranges tstzmultirange
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
-- The statement is cheap per row but its estimates are large; JIT compiling it
-- cost more than running it (0.7 s a call in benchmarks/bench_catchup.py).
SET jit = off
SET work_mem = '64MB'
-- the best plan depends on how wide p_ranges is: planned per call, except for
-- the few buckets of a late bar or a live minute (below)
SET plan_cache_mode = force_custom_plan
-- Every table read here is read by a short index range per symbol. A size
-- estimate taken while derived_data_bars was empty (a fresh install, the start of
-- a rebuild) must not turn that into a table scan repeated per run of sessions.
SET enable_seqscan = off
AS $$
DECLARE
    v_timeframe tickagg.timeframes%ROWTYPE;
    v_buckets_with_data bigint;
    v_bars_written bigint;
    v_partial_bars bigint;
    v_bars_deleted bigint;
BEGIN
    SELECT * INTO v_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    -- A late bar or a closing live minute touches a bucket or two: planning the
    -- statements below took 1.5 ms of the 2.3 ms such a call cost, and their
    -- cached generic plan (index lookups) is right for a few buckets. It is not
    -- for a catch-up or a backfill (a full catch-up ran 5-9x slower), which keep
    -- custom plans. The function's SET clause restores the mode on exit.
    IF (SELECT sum(upper(r.span) - lower(r.span)) FROM unnest(p_ranges) AS r (span))
        <= v_timeframe.step * 16 THEN
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
    END IF;

    -- Catch-up past the cursor finds no bars of its own yet: then a plain insert
    -- does (an upsert costs 70% more per row) and nothing can need soft-deleting.
    -- A bar that a concurrent call commits meanwhile makes the insert fail on the
    -- key; the upsert below then takes over, as if the probe had seen it.
    IF NOT EXISTS (
        SELECT 1
        FROM unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL (
            SELECT 1
            FROM tickagg.derived_data_bars AS d
            WHERE
                d.canonical_symbol = p_canonical_symbol
                AND d.timeframe = p_timeframe
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
                    p_canonical_symbol, p_timeframe, a.bucket_start, a.bucket_end, a.open, a.high, a.low,
                    a.close, a.volume, a.vwap, a.trade_count, a.source_candles, a.expected_candles,
                    a.quality_score, a.is_partial
                FROM tickagg.aggregate_buckets(
                    p_canonical_symbol, p_timeframe, v_timeframe.source_timeframe, p_ranges
                ) AS a
                -- in key order the index grows at one edge and the next level
                -- reads the bars from neighbouring heap pages
                ORDER BY a.bucket_start
                RETURNING is_partial
            )
            SELECT count(*), count(*) FILTER (WHERE i.is_partial)
            INTO v_bars_written, v_partial_bars
            FROM inserted AS i;
            RETURN jsonb_build_object(
                'buckets_with_data', v_bars_written,
                'bars_written', v_bars_written,
                'partial_bars', v_partial_bars,
                'bars_deleted', 0
            );
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- fall through to the upsert
        END;
    END IF;

    WITH aggregated AS MATERIALIZED (
        SELECT a.*
        FROM tickagg.aggregate_buckets(
            p_canonical_symbol, p_timeframe, v_timeframe.source_timeframe, p_ranges
        ) AS a
    ),
    upserted AS (
        INSERT INTO tickagg.derived_data_bars AS d (
            canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
            trade_count, source_candles, expected_candles, quality_score, is_partial
        )
        SELECT
            p_canonical_symbol, p_timeframe, a.bucket_start, a.bucket_end, a.open, a.high, a.low, a.close,
            a.volume, a.vwap, a.trade_count, a.source_candles, a.expected_candles, a.quality_score, a.is_partial
        FROM aggregated AS a
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
        RETURNING d.is_partial
    ),
    removed AS (
        UPDATE tickagg.derived_data_bars AS d SET
            deleted_at = now(),
            derivation_version = d.derivation_version + 1,
            change_no = nextval('tickagg.bar_change_seq'),
            updated_at = now()
        FROM unnest(p_ranges) AS r (span)
        WHERE
            d.canonical_symbol = p_canonical_symbol
            AND d.timeframe = p_timeframe
            AND d.ts_utc >= lower(r.span)
            AND d.ts_utc < upper(r.span)
            AND d.deleted_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM aggregated AS a WHERE a.bucket_start = d.ts_utc)
        RETURNING 1
    )
    SELECT
        (SELECT count(*) FROM aggregated),
        (SELECT count(*) FROM upserted),
        (SELECT count(*) FROM upserted AS u WHERE u.is_partial),
        (SELECT count(*) FROM removed)
    INTO v_buckets_with_data, v_bars_written, v_partial_bars, v_bars_deleted;

    RETURN jsonb_build_object(
        'buckets_with_data', v_buckets_with_data,
        'bars_written', v_bars_written,
        'partial_bars', v_partial_bars,
        'bars_deleted', v_bars_deleted
    );
END
$$;

COMMENT ON FUNCTION tickagg.rollup_ranges(text, text, tstzmultirange) IS
'Recompute the derived bars of one symbol and timeframe whose buckets start in p_ranges, set-based, from the source timeframe.';
