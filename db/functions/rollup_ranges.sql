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
AS $$
DECLARE
    v_calendar_code text;
    v_timeframe tickagg.timeframes%ROWTYPE;
    v_buckets_with_data bigint;
    v_bars_written bigint;
    v_partial_bars bigint;
    v_bars_deleted bigint;
BEGIN
    SELECT r.calendar_code INTO v_calendar_code
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;

    SELECT * INTO v_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    WITH spans AS MATERIALIZED (
        SELECT
            greatest(s.open_utc, lower(r.span)) AS span_from,
            least(s.close_utc, upper(r.span)) AS span_to,
            s.open_utc,
            s.week_open_utc
        FROM unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL tickagg.calendar_sessions(v_calendar_code, lower(r.span), upper(r.span)) AS s
    ),
    buckets AS MATERIALIZED (
        SELECT b.bucket_start, b.bucket_end, b.expected_candles
        FROM unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL tickagg.calendar_buckets(
            v_calendar_code, p_timeframe, lower(r.span), upper(r.span)
        ) AS b
        WHERE b.bucket_start >= lower(r.span) AND b.bucket_start < upper(r.span)
    ),
    aggregated AS MATERIALIZED (
        SELECT
            CASE v_timeframe.bucket_kind
                WHEN 'day' THEN sp.open_utc
                WHEN 'week' THEN sp.week_open_utc
                ELSE date_bin(v_timeframe.step, s.ts_utc, sp.open_utc)
            END AS bucket_start,
            -- first/last by time without a sort per group: compare [epoch, price] arrays
            (min(ARRAY[extract(EPOCH FROM s.ts_utc)::double precision, s.open]))[2] AS open,
            max(s.high) AS high,
            min(s.low) AS low,
            (max(ARRAY[extract(EPOCH FROM s.ts_utc)::double precision, s.close]))[2] AS close,
            sum(s.volume) AS volume,
            CASE
                WHEN count(s.vwap) = count(*) AND sum(s.volume) > 0
                    THEN sum(s.vwap * s.volume) / sum(s.volume)
            END AS vwap,
            sum(s.trade_count)::bigint AS trade_count,
            sum(s.source_candles)::integer AS source_candles
        FROM spans AS sp
        INNER JOIN tickagg.rollup_source_bars AS s
            ON
                s.canonical_symbol = p_canonical_symbol
                AND s.timeframe = v_timeframe.source_timeframe
                AND s.ts_utc >= sp.span_from
                AND s.ts_utc < sp.span_to
        GROUP BY 1
    ),
    upserted AS (
        INSERT INTO tickagg.derived_data_bars AS d (
            canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
            trade_count, source_candles, expected_candles, quality_score, is_partial
        )
        SELECT
            p_canonical_symbol,
            p_timeframe,
            a.bucket_start,
            b.bucket_end,
            a.open,
            a.high,
            a.low,
            a.close,
            a.volume,
            a.vwap,
            a.trade_count,
            a.source_candles,
            b.expected_candles,
            CASE
                WHEN a.source_candles >= b.expected_candles THEN 2
                WHEN a.source_candles * 100 >= b.expected_candles * v_timeframe.usable_quality_pct THEN 1
                ELSE 0
            END,
            a.source_candles < b.expected_candles
        FROM aggregated AS a
        INNER JOIN buckets AS b ON b.bucket_start = a.bucket_start
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
                d.bucket_end, d.open, d.high, d.low, d.close, d.volume, d.vwap, d.trade_count,
                d.source_candles, d.expected_candles, d.quality_score, d.is_partial
            ) IS DISTINCT FROM (
                excluded.bucket_end, excluded.open, excluded.high, excluded.low, excluded.close,
                excluded.volume, excluded.vwap, excluded.trade_count, excluded.source_candles,
                excluded.expected_candles, excluded.quality_score, excluded.is_partial
            )
        RETURNING d.is_partial
    ),
    removed AS (
        UPDATE tickagg.derived_data_bars AS d SET
            deleted_at = now(),
            derivation_version = d.derivation_version + 1,
            change_no = nextval('tickagg.bar_change_seq'),
            updated_at = now()
        FROM buckets AS b
        WHERE
            d.canonical_symbol = p_canonical_symbol
            AND d.timeframe = p_timeframe
            AND d.ts_utc = b.bucket_start
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
