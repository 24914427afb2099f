-- Undo 0013. The previous code's migrate re-creates its agg_finish (every task
-- due again after run_interval); rollup_bucket_end goes with the column it fills.
DROP FUNCTION IF EXISTS tickagg.rollup_bucket_end(text, text, timestamptz);
ALTER TABLE tickagg.data_agg_state DROP COLUMN pending_bucket_end;
DELETE FROM tickagg.settings
WHERE setting_key IN ('idle_recheck_interval', 'gap_scan_quiet_interval', 'claim_max_wait', 'claim_aged_share');
