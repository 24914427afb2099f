-- A rollup catch-up call materialised up to default_max_windows (10,000) buckets
-- when neither the caller nor the task set a number. A backfill of 1M one-minute
-- bars of 10 symbols then took 170 runs through `tickagg run`, each level re-run
-- after every run of the level below; at 50,000 it takes 70 and the upper levels
-- a third less time. A 5m call then reads at most 250,000 source bars (about
-- 1.5 s, sorted within rollup_ranges' work_mem). Its own setting, so a ticks_1m
-- call keeps default_max_windows minutes of ticks.
INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
(
    'rollup_max_windows', '50000',
    'buckets one rollup catch-up call may materialise when neither the caller nor the task sets a number'
);

-- The export indexes (canonical_symbol, change_no) serve the exporter alone, but a
-- rollup read (a symbol, a timeframe, a time range) could use them too: planned
-- while a table was nearly empty (a fresh install, statistics taken before a
-- backfill, a generic plan a session cached early) the planner saw no difference
-- and picked one, and then every call read all of the symbol's bars, once per run
-- of sessions (a 1d catch-up of 90 bars took up to 25 s). As partial indexes on a
-- predicate only the exporter's `change_no > n` implies, they are never candidates
-- for a read without a change_no condition. Rebuilding them reads each table once.
DROP INDEX tickagg.idx_data_bars_change;
CREATE INDEX idx_data_bars_change ON tickagg.data_bars (canonical_symbol, change_no)
WHERE change_no IS NOT NULL;
DROP INDEX tickagg.idx_derived_data_bars_change;
CREATE INDEX idx_derived_data_bars_change ON tickagg.derived_data_bars (canonical_symbol, change_no)
WHERE change_no IS NOT NULL;
