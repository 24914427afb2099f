-- One trigger function on derived_data_bars, derived_bars_changed, records what a
-- write owes both the timeframe above and the series' indicators. Its triggers
-- replace the two earlier pairs in db/post/010_triggers.sql, in the transaction
-- that creates the function, so no write goes unrecorded in between: this
-- migration holds the rollback, and documents the queue both used to share.
COMMENT ON TABLE tickagg.indicator_rewinds IS
'Indicator rewinds queued by derived_bars_changed: recompute the series from from_ts on.';
