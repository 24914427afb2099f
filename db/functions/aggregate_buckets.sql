-- The bars of one timeframe for the buckets starting in p_ranges, aggregated from
-- p_source_timeframe (its rollup source, or '1m' for the real-time views), with
-- expected candles and quality. Pure SQL so the planner inlines it. The ranges
-- must start and end on bucket boundaries or in closed market time.
CREATE OR REPLACE FUNCTION tickagg.aggregate_buckets(
    p_canonical_symbol text,
    p_timeframe text,
    p_source_timeframe text,
    p_ranges tstzmultirange
)
RETURNS TABLE (
    bucket_start timestamptz,
    bucket_end timestamptz,
    open double precision,
    high double precision,
    low double precision,
    close double precision,
    volume double precision,
    vwap double precision,
    trade_count bigint,
    source_candles integer,
    expected_candles integer,
    quality_score smallint,
    is_partial boolean
)
LANGUAGE sql
STABLE
AS $$
    WITH target AS (
        SELECT t.bucket_kind, t.step, t.usable_quality_pct, r.calendar_code
        FROM tickagg.timeframes AS t
        CROSS JOIN tickagg.core_asset_registry_all AS r
        WHERE t.timeframe = p_timeframe AND r.canonical_symbol = p_canonical_symbol
    ),
    spans AS MATERIALIZED (
        SELECT
            greatest(s.open_utc, lower(r.span)) AS span_from,
            least(s.close_utc, upper(r.span)) AS span_to,
            s.open_utc,
            s.week_open_utc
        FROM target AS tg
        CROSS JOIN unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL tickagg.calendar_sessions(tg.calendar_code, lower(r.span), upper(r.span)) AS s
    ),
    buckets AS MATERIALIZED (
        SELECT b.bucket_start, b.bucket_end, b.expected_candles
        FROM target AS tg
        CROSS JOIN unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL tickagg.calendar_buckets(
            tg.calendar_code, p_timeframe, lower(r.span), upper(r.span)
        ) AS b
        WHERE b.bucket_start >= lower(r.span) AND b.bucket_start < upper(r.span)
    ),
    aggregated AS (
        SELECT
            CASE tg.bucket_kind
                WHEN 'day' THEN sp.open_utc
                WHEN 'week' THEN sp.week_open_utc
                ELSE date_bin(tg.step, s.ts_utc, sp.open_utc)
            END AS bucket_start,
            -- first/last by time without a sort per group: compare [epoch, price] arrays
            (min(ARRAY[extract(EPOCH FROM s.ts_utc)::double precision, s.open]))[2] AS open,
            max(s.high) AS high,
            min(s.low) AS low,
            (max(ARRAY[extract(EPOCH FROM s.ts_utc)::double precision, s.close]))[2] AS close,
            sum(s.volume) AS volume,
            -- bars without volume carry no weight, so their missing vwap does not matter
            CASE
                WHEN count(*) FILTER (WHERE s.vwap IS NULL AND s.volume > 0) = 0 AND sum(s.volume) > 0
                    THEN sum(s.vwap * s.volume) / sum(s.volume)
            END AS vwap,
            sum(s.trade_count)::bigint AS trade_count,
            sum(s.source_candles)::integer AS source_candles
        FROM target AS tg
        CROSS JOIN spans AS sp
        -- one index range scan per session span, whatever the statistics say
        -- (OFFSET 0 keeps the planner from flattening it into a worse join)
        CROSS JOIN LATERAL (
            SELECT src.*
            FROM tickagg.rollup_source_bars AS src
            WHERE
                src.canonical_symbol = p_canonical_symbol
                AND src.timeframe = p_source_timeframe
                AND src.ts_utc >= sp.span_from
                AND src.ts_utc < sp.span_to
            OFFSET 0
        ) AS s
        GROUP BY 1
    )
    SELECT
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
        (CASE
            WHEN a.source_candles >= b.expected_candles THEN 2
            WHEN a.source_candles * 100 >= b.expected_candles * tg.usable_quality_pct THEN 1
            ELSE 0
        END)::smallint,
        a.source_candles < b.expected_candles
    FROM aggregated AS a
    INNER JOIN buckets AS b ON b.bucket_start = a.bucket_start
    CROSS JOIN target AS tg
$$;

COMMENT ON FUNCTION tickagg.aggregate_buckets(text, text, text, tstzmultirange) IS
'Bars of a timeframe for the buckets starting in p_ranges, aggregated from a source timeframe, with expected candles and quality.';
