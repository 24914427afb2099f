-- The bars of one symbol and timeframe starting in [p_from, p_to), whatever the
-- timeframe: 1-minute bars from data_bars, derived ones from the ohlcv view
-- (materialised plus the real-time tail). SQL, so it inlines into its caller
-- and the branch of the other kind of timeframe is never run.
CREATE OR REPLACE FUNCTION tickagg.bars_of(
    p_canonical_symbol text,
    p_timeframe text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (
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
    is_partial boolean
)
LANGUAGE sql
STABLE
AS $$
    SELECT
        m.ts_utc, m.ts_utc + interval '1 minute', m.open, m.high, m.low, m.close, m.volume, m.vwap,
        m.trade_count, 1, 1, 100::smallint, false
    FROM tickagg.data_bars AS m
    WHERE
        p_timeframe = '1m' AND m.canonical_symbol = p_canonical_symbol AND m.timeframe = '1m'
        AND m.ts_utc >= p_from AND m.ts_utc < p_to
    UNION ALL
    SELECT
        o.bucket, o.bucket_end, o.open, o.high, o.low, o.close, o.volume, o.vwap, o.trade_count,
        o.source_candles, o.expected_candles, o.quality_score, o.is_partial
    FROM tickagg.ohlcv AS o
    WHERE
        p_timeframe <> '1m' AND o.canonical_symbol = p_canonical_symbol AND o.timeframe = p_timeframe
        AND o.bucket >= p_from AND o.bucket < p_to
$$;

COMMENT ON FUNCTION tickagg.bars_of(text, text, timestamptz, timestamptz) IS
'Bars of one symbol and timeframe in [p_from, p_to): 1m from data_bars, derived timeframes from the ohlcv view.';
