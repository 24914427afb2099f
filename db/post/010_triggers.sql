-- Triggers live here, not in migrations, because their functions are re-applied
-- from db/functions after the migrations run. Each event names its transition
-- table changed_rows so one function serves insert, update and delete.
CREATE OR REPLACE TRIGGER data_bars_invalidate_insert
AFTER INSERT ON tickagg.data_bars
REFERENCING NEW TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.invalidate_from_data_bars();

CREATE OR REPLACE TRIGGER data_bars_invalidate_update
AFTER UPDATE ON tickagg.data_bars
REFERENCING NEW TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.invalidate_from_data_bars();

-- A compressed TimescaleDB hypertable refuses DELETE triggers with transition
-- tables: there deleted rows reach this function through data_bars_deleted.
DO $$
BEGIN
    IF tickagg.data_bars_compressed() THEN
        PERFORM tickagg.data_bars_collect_deletes();
    ELSE
        CREATE OR REPLACE TRIGGER data_bars_invalidate_delete
        AFTER DELETE ON tickagg.data_bars
        REFERENCING OLD TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tickagg.invalidate_from_data_bars();
    END IF;
END
$$;

-- Rejects go with their batch (see ingest_batches_deleted).
CREATE OR REPLACE TRIGGER ingest_batches_delete_rejects
AFTER DELETE ON tickagg.ingest_batches
REFERENCING OLD TABLE AS deleted_batches
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.ingest_batches_deleted();

CREATE OR REPLACE TRIGGER ingest_batches_truncate_rejects
AFTER TRUNCATE ON tickagg.ingest_batches
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.ingest_batches_deleted();

-- Derived bars: the level above and the series' indicators (see derived_bars_changed).
-- Before 0010 two functions did this, each with its own triggers: dropped here,
-- in the transaction that creates their replacement.
DROP TRIGGER IF EXISTS derived_data_bars_invalidate_insert ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_invalidate_update ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_invalidate_delete ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_insert ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_update ON tickagg.derived_data_bars;
DROP TRIGGER IF EXISTS derived_data_bars_indicators_rewind_delete ON tickagg.derived_data_bars;
DROP FUNCTION IF EXISTS tickagg.invalidate_from_derived_bars();
DROP FUNCTION IF EXISTS tickagg.indicators_rewind_from_derived_bars();

CREATE OR REPLACE TRIGGER derived_data_bars_changed_insert
AFTER INSERT ON tickagg.derived_data_bars
REFERENCING NEW TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.derived_bars_changed();

CREATE OR REPLACE TRIGGER derived_data_bars_changed_update
AFTER UPDATE ON tickagg.derived_data_bars
REFERENCING NEW TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.derived_bars_changed();

CREATE OR REPLACE TRIGGER derived_data_bars_changed_delete
AFTER DELETE ON tickagg.derived_data_bars
REFERENCING OLD TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.derived_bars_changed();

-- Ticks: late minutes and wake-ups for the ticks_1m task (see ticks_record_late).
CREATE OR REPLACE TRIGGER ticks_record_late_insert
AFTER INSERT ON tickagg.ticks
REFERENCING NEW TABLE AS new_ticks
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.ticks_record_late();

-- Stored sessions follow the calendars and their holidays (see calendar_days).
CREATE OR REPLACE TRIGGER market_calendars_refresh_days
AFTER INSERT OR UPDATE ON tickagg.market_calendars
FOR EACH ROW EXECUTE FUNCTION tickagg.calendar_days_from_calendars();

CREATE OR REPLACE TRIGGER market_holidays_refresh_days
AFTER INSERT OR UPDATE OR DELETE ON tickagg.market_holidays
FOR EACH ROW EXECUTE FUNCTION tickagg.calendar_days_from_holidays();

CREATE OR REPLACE TRIGGER market_holidays_truncate_refresh_days
AFTER TRUNCATE ON tickagg.market_holidays
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.calendar_days_from_holidays();

-- A symbol moved to another calendar re-derives its bars (registry_calendar_changed).
CREATE OR REPLACE TRIGGER registry_calendar_changed
AFTER UPDATE OF calendar_code ON tickagg.core_asset_registry_all
FOR EACH ROW
WHEN (old.calendar_code IS DISTINCT FROM new.calendar_code)
EXECUTE FUNCTION tickagg.registry_calendar_changed();
