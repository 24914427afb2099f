-- Row trigger AFTER DELETE on data_bars where it is a compressed TimescaleDB
-- hypertable (data_bars_collect_deletes): that refuses DELETE triggers with
-- transition tables, so each deleted minute is kept in
-- data_bars_deleted until data_bars_flush_deleted ends the statement. A row
-- trigger also stops TimescaleDB from deleting whole compressed batches unseen.
CREATE OR REPLACE FUNCTION tickagg.data_bars_collect_deleted()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    INSERT INTO tickagg.data_bars_deleted (canonical_symbol, timeframe, ts_utc, source_rank, change_no)
    VALUES (OLD.canonical_symbol, OLD.timeframe, OLD.ts_utc, OLD.source_rank, OLD.change_no);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.data_bars_collect_deleted() IS
'Row trigger on a compressed TimescaleDB data_bars: keeps each deleted minute for data_bars_flush_deleted.';
