-- All grants in one place, re-applied by every migrate. The runner role calls
-- functions and reads views; it never writes tables directly.
REVOKE ALL ON SCHEMA tickagg FROM PUBLIC;
GRANT USAGE ON SCHEMA tickagg TO tickagg_runner;

REVOKE ALL ON ALL TABLES IN SCHEMA tickagg FROM PUBLIC, tickagg_runner;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA tickagg FROM PUBLIC, tickagg_runner;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tickagg FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tickagg TO tickagg_runner;
-- Storage upkeep the runner never calls itself (ingest and retention call it as
-- owner): as the runner role it made empty partitions for any far-future days.
REVOKE EXECUTE ON FUNCTION tickagg.ticks_ensure_partitions(timestamptz, timestamptz) FROM tickagg_runner;
-- An admin's repair: as the runner role it could move any cursor back, or forward
-- as far as the source has data, without a claim.
REVOKE EXECUTE ON FUNCTION tickagg.agg_task_set_cursor(text, text, text, timestamptz, boolean) FROM tickagg_runner;

GRANT SELECT ON
tickagg.asset_registry,
tickagg.aggregation_health,
tickagg.ohlcv,
tickagg.ohlcv_5min,
tickagg.ohlcv_15min,
tickagg.ohlcv_30min,
tickagg.ohlcv_1hour,
tickagg.ohlcv_4hour,
tickagg.ohlcv_1day,
tickagg.ohlcv_1week,
tickagg.schema_files,
tickagg.task_status,
tickagg.task_waits,
tickagg.task_summary,
tickagg.bar_counts,
tickagg.ingest_rejects_recent,
tickagg.ingest_batches_recent,
tickagg.rollup_source_bars,
tickagg.coverage,
tickagg.gaps_open,
tickagg.gap_history,
tickagg.calendars,
tickagg.calendar_holidays,
tickagg.ops_runlog_recent,
tickagg.export_backlog,
tickagg.ticks_storage,
tickagg.tick_rejects_recent,
tickagg.bar_indicators
TO tickagg_runner;

-- Views call calendar_open_time and setting(), which run with the caller's rights
-- (plain functions, inlined where they can be): the runner role reads the calendar
-- tables and the sessions stored from them, and the settings (thresholds and
-- intervals, nothing secret).
GRANT SELECT ON tickagg.market_calendars, tickagg.market_holidays, tickagg.calendar_days, tickagg.settings
TO tickagg_runner;

-- /readyz and `tickagg doctor` compare applied migrations with db/migrations.
GRANT SELECT ON tickagg._yoyo_migration TO tickagg_runner;

ALTER DEFAULT PRIVILEGES IN SCHEMA tickagg REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
