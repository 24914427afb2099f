-- Undo 0007: indicator tables, tasks, settings, and the functions and triggers
-- that name them (the previous code's migrate would not drop them).
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_insert ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_update ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_delete ON tickagg.derived_data_bars;
DROP FUNCTION IF EXISTS tickagg.indicators_rewind_from_derived_bars();
DROP FUNCTION IF EXISTS tickagg.indicators_step(text, text, timestamptz, integer);
DROP FUNCTION IF EXISTS tickagg.anchored_vwap(text, text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS tickagg.export_batch(text, bigint, integer, bigint);
DROP VIEW IF EXISTS tickagg.bar_indicators;
DROP TABLE tickagg.derived_bar_indicators CASCADE;
DROP TABLE tickagg.indicator_checkpoints CASCADE;
DROP TABLE tickagg.indicator_rewinds CASCADE;

DELETE FROM tickagg.data_agg_state
WHERE task_kind = 'indicators';
ALTER TABLE tickagg.data_agg_state DROP CONSTRAINT data_agg_state_task_kind_check;
ALTER TABLE tickagg.data_agg_state ADD CONSTRAINT data_agg_state_task_kind_check
CHECK (task_kind IN ('rollup', 'ticks_1m', 'export', 'gap_scan', 'gap_scan_history', 'ticks_retention'));

DELETE FROM tickagg.settings
WHERE setting_key IN (
        'indicators_enabled', 'indicators_priority', 'indicators_max_bars', 'indicators_checkpoint_every',
        'indicator_sma_periods', 'indicator_ema_periods', 'indicator_rsi_period', 'indicator_macd',
        'indicator_bbands', 'indicator_atr_period', 'indicator_stoch', 'indicator_cci_period',
        'indicator_mfi_period', 'indicator_adx_period'
    );
