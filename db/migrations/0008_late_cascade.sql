-- The late-data cascade (rollup_cascade_dirty) redoes the dirty buckets of every
-- level above a run, several levels per statement, whose own writes record
-- invalidations for levels just redone. It drops exactly those: rows its own
-- transaction wrote, which this column tells apart from concurrent writers' rows.
ALTER TABLE tickagg.agg_invalidations
ADD COLUMN created_by_xact xid8 NOT NULL DEFAULT pg_current_xact_id();

-- rollup_ranges now takes several timeframes (one statement for several levels);
-- the single-timeframe signature it replaces would otherwise linger.
DROP FUNCTION IF EXISTS tickagg.rollup_ranges(text, text, tstzmultirange);
