-- A rollup catch-up call materialises up to default_max_windows buckets. At 10,000
-- a backfill of 1M one-minute bars of 10 symbols took 170 runs through
-- `tickagg run`, each level re-run after every run of the level below, and the
-- upper levels' share of the time fell by a third at 50,000 (70 runs). A 5m call
-- then reads at most 250,000 source bars (about 1.5 s, within rollup_ranges'
-- work_mem); a ticks_1m call at most the 7 days its ticks are kept anyway.
-- Only a value nobody changed is raised.
UPDATE tickagg.settings SET setting_value = '50000'
WHERE setting_key = 'default_max_windows' AND setting_value = '10000';
