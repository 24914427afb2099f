-- Undo 0014. The previous code's migrate re-creates catchup_aggregation_range's
-- four-argument signature; the batch functions go with the new one.
DROP FUNCTION IF EXISTS tickagg.agg_run_rollup_batch(text, text[], uuid[], timestamptz[], uuid[], timestamptz, integer);
DROP FUNCTION IF EXISTS tickagg.rollup_ranges_batch(text, text[], tstzmultirange[]);
DROP FUNCTION IF EXISTS tickagg.agg_claim_batch(text, timestamptz, integer, integer);
DROP FUNCTION IF EXISTS tickagg.rollup_has_few_buckets_pending(text, text, timestamptz, interval);
DROP FUNCTION IF EXISTS tickagg.catchup_aggregation_range(text, text, timestamptz, integer, boolean);
DELETE FROM tickagg.settings
WHERE setting_key = 'rollup_batch_size';
