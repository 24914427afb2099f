-- Cross-check rollup: daily bars per symbol computed from the 1-minute rows of
-- `aggregates FINAL` (never from inserts: a ReplacingMergeTree source would
-- double-count corrections), rebuilt by a refreshable materialized view.
-- Compare with the exported 1d bars or force a refresh: SYSTEM REFRESH VIEW daily_rollup.
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_rollup
REFRESH EVERY 1 HOUR
ENGINE = MergeTree
ORDER BY (symbol, day)
AS SELECT
    symbol,
    toDate(timestamp) AS day,
    count() AS minutes,
    argMin(open, timestamp) AS open,
    max(high) AS high,
    min(low) AS low,
    argMax(close, timestamp) AS close,
    sum(volume) AS volume
FROM aggregates FINAL
WHERE timeframe = '1m' AND is_deleted = 0
GROUP BY symbol, day;
