-- Batches of rollup tasks (agg_claim_batch, agg_run_rollup_batch): how many
-- tasks of one timeframe one claim takes, and catchup_aggregation_range's new
-- plan-only parameter (p_write), which replaces its four-argument signature.
INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
(
    'rollup_batch_size', '500',
    'rollup tasks of one timeframe a runner claims and materialises in one statement (1: one task a run)'
);

DROP FUNCTION IF EXISTS tickagg.catchup_aggregation_range(text, text, timestamptz, integer);
