-- What a rollup reads: 1-minute bars and live derived bars under one shape, so a
-- timeframe rolls up from its source timeframe whatever table holds it.
CREATE OR REPLACE VIEW tickagg.rollup_source_bars AS
SELECT
    b.canonical_symbol,
    b.timeframe,
    b.ts_utc,
    b.open,
    b.high,
    b.low,
    b.close,
    b.volume,
    b.vwap,
    b.trade_count,
    1 AS source_candles
FROM tickagg.data_bars AS b
UNION ALL
SELECT
    d.canonical_symbol,
    d.timeframe,
    d.ts_utc,
    d.open,
    d.high,
    d.low,
    d.close,
    d.volume,
    d.vwap,
    d.trade_count,
    d.source_candles
FROM tickagg.derived_data_bars AS d
WHERE d.deleted_at IS NULL;
