-- Route data_bars' deletes through data_bars_deleted (idempotent): its DELETE
-- triggers with transition tables (db/post 010, 020), which a compressed
-- TimescaleDB hypertable refuses, give way to data_bars_collect_deleted (each
-- row) and data_bars_flush_deleted (each statement). Called by `migrate
-- --timescaledb` before it enables compression, and by db/post on every migrate
-- while data_bars is compressed (also after a rollback dropped the triggers).
-- Invoker's rights: DDL only the table's owner may do.
CREATE OR REPLACE FUNCTION tickagg.data_bars_collect_deletes()
RETURNS void
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    v_trigger name;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname
        FROM pg_catalog.pg_trigger AS t
        WHERE
            t.tgrelid = 'tickagg.data_bars'::regclass
            AND NOT t.tgisinternal
            AND t.tgoldtable IS NOT NULL
            AND t.tgtype::integer & 8 <> 0  -- TRIGGER_TYPE_DELETE
    LOOP
        EXECUTE format('DROP TRIGGER %I ON tickagg.data_bars', v_trigger);
    END LOOP;
    CREATE OR REPLACE TRIGGER data_bars_collect_deleted
    AFTER DELETE ON tickagg.data_bars
    FOR EACH ROW EXECUTE FUNCTION tickagg.data_bars_collect_deleted();
    CREATE OR REPLACE TRIGGER data_bars_flush_deleted
    AFTER DELETE ON tickagg.data_bars
    FOR EACH STATEMENT EXECUTE FUNCTION tickagg.data_bars_flush_deleted();
END
$$;

COMMENT ON FUNCTION tickagg.data_bars_collect_deletes() IS
'Replaces data_bars'' DELETE transition-table triggers with the collecting pair (compressed TimescaleDB hypertable).';
