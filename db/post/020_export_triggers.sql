-- Hard deletes of 1-minute bars leave tombstones for the ClickHouse exporter.
-- (On a compressed TimescaleDB hypertable through data_bars_deleted instead: 010.)
DO $$
BEGIN
    IF NOT tickagg.data_bars_compressed() THEN
        CREATE OR REPLACE TRIGGER data_bars_export_tombstones
        AFTER DELETE ON tickagg.data_bars
        REFERENCING OLD TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tickagg.record_data_bar_tombstones();
    END IF;
END
$$;

-- Export wake-ups fire as the write that queued them commits (export_wake).
-- (A constraint trigger cannot be created OR REPLACE.)
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_trigger AS t
        WHERE t.tgrelid = 'tickagg.export_wakes_pending'::regclass AND t.tgname = 'export_wakes_at_commit'
    ) THEN
        CREATE CONSTRAINT TRIGGER export_wakes_at_commit
        AFTER INSERT ON tickagg.export_wakes_pending
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION tickagg.export_wakes_fire();
    END IF;
END
$$;
