-- Bars of every derived timeframe as a query should see them now: the
-- materialised bars before each rollup task's cursor plus the buckets from the
-- cursor on, aggregated on the fly from 1-minute bars (realtime_tail; the newest
-- bucket may still be open, so is_partial). A view, not a function, so that a
-- reading role needs SELECT on it only (a view reads its tables with its
-- owner's rights; an inlined function's tables were checked against the
-- reader's) and filters on symbol, timeframe and bucket reach the indexes.
CREATE OR REPLACE VIEW tickagg.ohlcv AS
SELECT
    d.canonical_symbol,
    d.timeframe,
    d.ts_utc AS bucket,
    d.bucket_end,
    d.open,
    d.high,
    d.low,
    d.close,
    d.volume,
    d.vwap,
    d.trade_count,
    d.source_candles,
    d.expected_candles,
    d.quality_score,
    d.is_partial,
    true AS is_materialized
FROM tickagg.derived_data_bars AS d
INNER JOIN tickagg.data_agg_state AS s
    ON
        s.canonical_symbol = d.canonical_symbol
        AND s.timeframe = d.timeframe
        AND s.task_kind = 'rollup'
WHERE d.deleted_at IS NULL AND d.ts_utc < s.last_agg_bar_ts_utc
UNION ALL
SELECT
    s.canonical_symbol,
    s.timeframe,
    a.bucket_start,
    a.bucket_end,
    a.open,
    a.high,
    a.low,
    a.close,
    a.volume,
    a.vwap,
    a.trade_count,
    a.source_candles,
    a.expected_candles,
    a.quality_score,
    a.is_partial,
    false AS is_materialized
FROM tickagg.data_agg_state AS s
CROSS JOIN LATERAL tickagg.realtime_tail(s.canonical_symbol, s.timeframe, s.last_agg_bar_ts_utc) AS a
WHERE s.task_kind = 'rollup';

COMMENT ON VIEW tickagg.ohlcv IS
'Derived bars of every timeframe (filter on timeframe): materialised bars plus the not-yet-materialised tail computed from 1-minute bars (real-time aggregation).';
