-- Undo 0009. The previous code's migrate re-creates calendar_sessions computing
-- every call (until it runs, calendar_sessions fails: stop ingest and runners
-- first); the functions and triggers that name calendar_days go with it, and
-- agg_run_rollup, which the previous runner does not call.
DROP TRIGGER IF EXISTS market_calendars_refresh_days ON tickagg.market_calendars;
DROP TRIGGER IF EXISTS market_holidays_refresh_days ON tickagg.market_holidays;
DROP TRIGGER IF EXISTS market_holidays_truncate_refresh_days ON tickagg.market_holidays;
DROP FUNCTION IF EXISTS tickagg.agg_run_rollup(text, text, uuid, timestamptz, uuid, timestamptz, integer);
DROP FUNCTION IF EXISTS tickagg.calendar_days_from_calendars();
DROP FUNCTION IF EXISTS tickagg.calendar_days_from_holidays();
DROP FUNCTION IF EXISTS tickagg.calendar_days_refresh(text, daterange);
DROP FUNCTION IF EXISTS tickagg.calendar_days_compute(text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS tickagg.calendar_days_window();
DROP TABLE tickagg.calendar_days;
ALTER TABLE tickagg.market_calendars DROP CONSTRAINT market_calendars_offsets_near_the_date;
