-- Statement trigger AFTER DELETE on data_bars, installed with
-- data_bars_collect_deleted (data_bars_collect_deletes): deleting the minutes that statement collected fires
-- data_bars_deleted's own DELETE triggers, whose transition table gives
-- invalidate_from_data_bars and record_data_bar_tombstones exactly the rows a
-- transition table on data_bars would have. Other sessions' collected rows are
-- uncommitted, hence invisible and left to their own statement.
CREATE OR REPLACE FUNCTION tickagg.data_bars_flush_deleted()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    DELETE FROM tickagg.data_bars_deleted;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.data_bars_flush_deleted() IS
'Statement trigger on a compressed TimescaleDB data_bars: hands the collected deleted minutes to the late-data and tombstone triggers.';
