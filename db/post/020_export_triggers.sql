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
