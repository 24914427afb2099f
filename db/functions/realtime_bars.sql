-- Bars of one timeframe as a query should see them now: materialised bars before
-- each task's cursor plus the buckets from the cursor on, aggregated on the fly
-- from 1-minute bars (the newest bucket may still be open, so is_partial). Pure
-- SQL so the ohlcv_* views inline it and a symbol filter reaches the indexes.
CREATE OR REPLACE FUNCTION tickagg.realtime_bars(p_timeframe text)
RETURNS TABLE (
    canonical_symbol text,
    bucket timestamptz,
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
    is_partial boolean,
    is_materialized boolean
)
LANGUAGE sql
STABLE
AS $$
    SELECT
        d.canonical_symbol, d.ts_utc, d.bucket_end, d.open, d.high, d.low, d.close, d.volume, d.vwap,
        d.trade_count, d.source_candles, d.expected_candles, d.quality_score, d.is_partial, true
    FROM tickagg.derived_data_bars AS d
    INNER JOIN tickagg.data_agg_state AS s
        ON s.canonical_symbol = d.canonical_symbol AND s.timeframe = d.timeframe AND s.task_kind = 'rollup'
    WHERE d.timeframe = p_timeframe AND d.deleted_at IS NULL AND d.ts_utc < s.last_agg_bar_ts_utc
    UNION ALL
    SELECT
        s.canonical_symbol, a.bucket_start, a.bucket_end, a.open, a.high, a.low, a.close, a.volume, a.vwap,
        a.trade_count, a.source_candles, a.expected_candles, a.quality_score,
        a.is_partial OR a.bucket_end > now(), false
    FROM tickagg.data_agg_state AS s
    -- the tail ends at the newest minute: every bucket starting before it holds data
    CROSS JOIN LATERAL (
        SELECT max(m.ts_utc) + interval '1 minute' AS minutes_end
        FROM tickagg.data_bars AS m
        WHERE m.canonical_symbol = s.canonical_symbol AND m.timeframe = '1m'
    ) AS n
    CROSS JOIN LATERAL tickagg.aggregate_buckets(
        s.canonical_symbol, p_timeframe, '1m',
        tstzmultirange(tstzrange(s.last_agg_bar_ts_utc, greatest(s.last_agg_bar_ts_utc, n.minutes_end)))
    ) AS a
    WHERE s.timeframe = p_timeframe AND s.task_kind = 'rollup'
$$;

COMMENT ON FUNCTION tickagg.realtime_bars(text) IS
'Materialised bars of a timeframe plus the not-yet-materialised tail computed from 1-minute bars (real-time aggregation).';
