-- Live bars per timeframe, with how many are partial and their mean quality.
CREATE OR REPLACE VIEW tickagg.bar_counts AS
SELECT
    t.timeframe,
    count(b.ts_utc) AS bars,
    count(DISTINCT b.canonical_symbol) AS symbols,
    count(*) FILTER (WHERE b.is_partial) AS partial_bars,
    round(avg(b.quality_score), 3) AS avg_quality
FROM tickagg.timeframes AS t
LEFT JOIN (
    SELECT d.canonical_symbol, d.timeframe, d.ts_utc, d.is_partial, d.quality_score
    FROM tickagg.derived_data_bars AS d
    WHERE d.deleted_at IS NULL
    UNION ALL
    SELECT m.canonical_symbol, m.timeframe, m.ts_utc, false AS is_partial, 2 AS quality_score
    FROM tickagg.data_bars AS m
) AS b ON b.timeframe = t.timeframe
GROUP BY t.timeframe, t.sort_order
ORDER BY t.sort_order;
