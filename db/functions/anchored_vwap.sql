-- VWAP anchored at p_anchor_ts: for every derived bar of the series from the
-- first one at or after the anchor (up to p_to), the volume-weighted average of
-- the bars' own vwap since the anchor. NULL from the first bar that traded
-- without a vwap on (it is never approximated from OHLC) and while nothing has
-- traded yet. Bars are the materialised, not soft-deleted ones.
CREATE OR REPLACE FUNCTION tickagg.anchored_vwap(
    p_canonical_symbol text,
    p_timeframe text,
    p_anchor_ts timestamptz,
    p_to timestamptz DEFAULT NULL
)
RETURNS TABLE (ts_utc timestamptz, anchored_vwap double precision, cumulative_volume double precision)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    PERFORM tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    IF p_anchor_ts IS NULL THEN
        RAISE EXCEPTION 'anchored_vwap needs an anchor timestamp' USING ERRCODE = 'TK004';
    END IF;
    RETURN QUERY
    SELECT
        w.ts_utc,
        CASE WHEN NOT w.void AND w.cum_v > 0 THEN w.cum_pv / w.cum_v END,
        w.cum_v
    FROM (
        SELECT
            b.ts_utc,
            sum(CASE WHEN b.volume > 0 THEN b.vwap * b.volume ELSE 0 END) OVER (ORDER BY b.ts_utc) AS cum_pv,
            sum(CASE WHEN b.volume > 0 THEN b.volume ELSE 0 END) OVER (ORDER BY b.ts_utc) AS cum_v,
            bool_or(b.volume > 0 AND b.vwap IS NULL) OVER (ORDER BY b.ts_utc) AS void
        FROM tickagg.derived_data_bars AS b
        WHERE
            b.canonical_symbol = p_canonical_symbol
            AND b.timeframe = p_timeframe
            AND b.ts_utc >= p_anchor_ts
            AND (p_to IS NULL OR b.ts_utc < p_to)
            AND b.deleted_at IS NULL
    ) AS w
    ORDER BY w.ts_utc;
END
$$;

COMMENT ON FUNCTION tickagg.anchored_vwap(text, text, timestamptz, timestamptz) IS
'Running VWAP of a symbol and timeframe from p_anchor_ts (to p_to): per bar, the volume-weighted mean of the bars'' vwap since the anchor.';
