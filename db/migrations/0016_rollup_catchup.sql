-- A rollup catch-up call materialises up to default_max_windows buckets. At 10,000
-- a backfill of 1M one-minute bars of 10 symbols took 170 runs through
-- `tickagg run`, each level re-run after every run of the level below, and the
-- upper levels' share of the time fell by a third at 50,000 (70 runs). A 5m call
-- then reads at most 250,000 source bars (about 1.5 s, within rollup_ranges'
-- work_mem); a ticks_1m call at most the 7 days its ticks are kept anyway.
-- Only a value nobody changed is raised.
UPDATE tickagg.settings SET setting_value = '50000'
WHERE setting_key = 'default_max_windows' AND setting_value = '10000';

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
