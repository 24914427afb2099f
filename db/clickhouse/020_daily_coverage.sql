-- Daily coverage per symbol and timeframe, maintained on insert: the distinct
-- bar timestamps seen per UTC day (uniqExact state, so re-exported and corrected
-- rows never count twice). Deletions are not subtracted: a day whose bars were
-- deleted keeps its count until `daily_rollup` (from FINAL) is consulted.
-- Query: SELECT symbol, timeframe, day, uniqExactMerge(bars) FROM daily_coverage GROUP BY ALL.
CREATE TABLE IF NOT EXISTS daily_coverage
(
    symbol LowCardinality(String),
    timeframe LowCardinality(String),
    day Date,
    bars AggregateFunction(uniqExact, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (symbol, timeframe, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_coverage_mv TO daily_coverage AS
SELECT
    symbol,
    timeframe,
    toDate(timestamp) AS day,
    uniqExactState(timestamp) AS bars
FROM aggregates
WHERE is_deleted = 0
GROUP BY symbol, timeframe, day;
