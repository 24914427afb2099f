-- PostgreSQL side of `tickagg verify`: per timeframe and UTC day of one symbol,
-- the number of current bars (1m from data_bars, the rest from derived_data_bars
-- without deleted_at) and a content checksum computed exactly as the ClickHouse
-- side does over `aggregates FINAL`: the sum over bars of the minute number and
-- the prices (x 1e6), volume (x 1e3), trade_count and quality columns, each
-- rounded to an integer and weighted by a distinct prime. [p_from, p_to) limits
-- the bar timestamps.
CREATE OR REPLACE FUNCTION tickagg.export_day_checksums(
    p_canonical_symbol text,
    p_from timestamptz DEFAULT '-infinity',
    p_to timestamptz DEFAULT 'infinity'
)
RETURNS TABLE (timeframe text, day date, bars bigint, checksum numeric)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    WITH bars AS (
        SELECT
            '1m'::text AS timeframe, d.ts_utc, d.open, d.high, d.low, d.close, d.volume, d.vwap, d.trade_count,
            1 AS source_candles, 1 AS expected_candles, 2 AS quality_score, false AS is_partial
        FROM tickagg.data_bars AS d
        WHERE d.canonical_symbol = p_canonical_symbol AND d.ts_utc >= p_from AND d.ts_utc < p_to
        UNION ALL
        SELECT
            b.timeframe, b.ts_utc, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count,
            b.source_candles, b.expected_candles, b.quality_score, b.is_partial
        FROM tickagg.derived_data_bars AS b
        WHERE
            b.canonical_symbol = p_canonical_symbol AND b.deleted_at IS NULL
            AND b.ts_utc >= p_from AND b.ts_utc < p_to
    )
    SELECT
        b.timeframe,
        (b.ts_utc AT TIME ZONE 'UTC')::date,
        count(*),
        sum(
            floor(extract(EPOCH FROM b.ts_utc) / 60)
            + 3 * floor(b.open * 1e6::float8 + 0.5)::numeric
            + 5 * floor(b.high * 1e6::float8 + 0.5)::numeric
            + 7 * floor(b.low * 1e6::float8 + 0.5)::numeric
            + 11 * floor(b.close * 1e6::float8 + 0.5)::numeric
            + 13 * floor(b.volume * 1e3::float8 + 0.5)::numeric
            + 17 * floor(coalesce(b.vwap, 0) * 1e6::float8 + 0.5)::numeric
            + 19 * coalesce(b.trade_count, 0)
            + 23 * b.source_candles + 29 * b.expected_candles + 31 * b.quality_score
            + 37 * b.is_partial::integer
        )
    FROM bars AS b
    GROUP BY 1, 2
    ORDER BY 1, 2
$$;

COMMENT ON FUNCTION tickagg.export_day_checksums(text, timestamptz, timestamptz) IS
'Per timeframe and UTC day: current bar count and the content checksum `tickagg verify` compares with ClickHouse.';
