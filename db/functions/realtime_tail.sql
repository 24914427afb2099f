-- The buckets of one symbol not materialised yet: from the rollup task's cursor
-- to the newest minute, aggregated from 1-minute bars (the last may still be
-- open). PL/pgSQL with jit off on purpose: inlined into a view, this part's
-- estimates grew with the size of data_bars until a one-day read of an ohlcv_*
-- view crossed jit_above_cost and spent ~140 ms compiling a 1 ms query; behind a
-- function boundary the view's plan stays cheap and this plan is cached.
CREATE OR REPLACE FUNCTION tickagg.realtime_tail(
    p_canonical_symbol text,
    p_timeframe text,
    p_from timestamptz
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
LANGUAGE plpgsql
STABLE
-- a tail is a few buckets when tasks keep up
ROWS 5
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_minutes_end timestamptz;
BEGIN
    -- every bucket starting before the newest minute holds data
    SELECT max(m.ts_utc) + interval '1 minute' INTO v_minutes_end
    FROM tickagg.data_bars AS m
    WHERE m.canonical_symbol = p_canonical_symbol AND m.timeframe = '1m';
    IF v_minutes_end IS NULL OR v_minutes_end <= p_from THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT
        a.bucket_start, a.bucket_end, a.open, a.high, a.low, a.close, a.volume, a.vwap,
        a.trade_count, a.source_candles, a.expected_candles, a.quality_score,
        a.is_partial OR a.bucket_end > now()
    FROM tickagg.aggregate_buckets(
        p_canonical_symbol, p_timeframe, '1m', tstzmultirange(tstzrange(p_from, v_minutes_end))
    ) AS a;
END;
$$;

COMMENT ON FUNCTION tickagg.realtime_tail(text, text, timestamptz) IS
'The not-yet-materialised buckets of a symbol and timeframe, from the task cursor to the newest 1-minute bar, aggregated on the fly (the last may be open: is_partial).';
