-- 30m bars, materialised plus the real-time tail; see tickagg.ohlcv.
CREATE OR REPLACE VIEW tickagg.ohlcv_30min AS
SELECT
    o.canonical_symbol,
    o.bucket,
    o.bucket_end,
    o.open,
    o.high,
    o.low,
    o.close,
    o.volume,
    o.vwap,
    o.trade_count,
    o.source_candles,
    o.expected_candles,
    o.quality_score,
    o.is_partial,
    o.is_materialized
FROM tickagg.ohlcv AS o
WHERE o.timeframe = '30m';
