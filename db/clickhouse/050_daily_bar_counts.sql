-- Daily bar counts per symbol, timeframe and UTC day, for gap detection: about
-- 3,650 rows per symbol and timeframe over ten years. Rebuilt from `aggregates
-- FINAL` by a refreshable materialized view (the whole table is replaced
-- atomically on each refresh), so corrections and re-exports never count twice
-- and deleted bars are gone after the next refresh. Supersedes the insert-time
-- `daily_coverage` (020, kept: applied files are never edited), which cannot
-- subtract deletions and is slower to read.
-- Refresh now: SYSTEM REFRESH VIEW daily_bar_counts_mv; SYSTEM WAIT VIEW daily_bar_counts_mv
-- (`tickagg export --refresh-views`, clickhouse.refresh_views).
-- Gaps: SELECT day, bars FROM daily_bar_counts WHERE symbol = 'EURUSD'
--       AND timeframe = '1m' AND bars < 1440 ORDER BY day
CREATE TABLE IF NOT EXISTS daily_bar_counts
(
    symbol LowCardinality(String),
    timeframe LowCardinality(String),
    day Date,
    bars UInt32,
    refreshed_at DateTime
)
ENGINE = MergeTree
ORDER BY (symbol, timeframe, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_bar_counts_mv
REFRESH EVERY 5 MINUTE
TO daily_bar_counts
AS SELECT
    symbol,
    timeframe,
    toDate(timestamp) AS day,
    toUInt32(count()) AS bars,
    now() AS refreshed_at
FROM aggregates FINAL
WHERE is_deleted = 0
GROUP BY symbol, timeframe, day;
