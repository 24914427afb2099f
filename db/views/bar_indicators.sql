-- Indicator values of the live (not soft-deleted) derived bars. A bar the
-- indicators task has not reached yet has no row here.
CREATE OR REPLACE VIEW tickagg.bar_indicators AS
SELECT
    i.canonical_symbol,
    i.timeframe,
    i.ts_utc,
    tickagg.indicators_json(i.key_set_id, i.vals) AS indicators,
    i.computed_at
FROM tickagg.derived_bar_indicators AS i
INNER JOIN tickagg.derived_data_bars AS b
    ON
        b.canonical_symbol = i.canonical_symbol
        AND b.timeframe = i.timeframe
        AND b.ts_utc = i.ts_utc
WHERE b.deleted_at IS NULL;

COMMENT ON VIEW tickagg.bar_indicators IS
'Technical indicators (jsonb) per live derived bar: sma_N, ema_N, rsi, macd*, bb_*, atr, stoch_k/d, cci, mfi, obv, adl, adx, plus_di, minus_di, vwap.';
