-- What data_bars_flush_deleted removes from data_bars_deleted is what a DELETE
-- removed from a compressed TimescaleDB data_bars: the same functions as
-- data_bars' own DELETE triggers (010, 020) see it under the same name.
CREATE OR REPLACE TRIGGER data_bars_deleted_invalidate
AFTER DELETE ON tickagg.data_bars_deleted
REFERENCING OLD TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.invalidate_from_data_bars();

CREATE OR REPLACE TRIGGER data_bars_deleted_export_tombstones
AFTER DELETE ON tickagg.data_bars_deleted
REFERENCING OLD TABLE AS changed_rows
FOR EACH STATEMENT EXECUTE FUNCTION tickagg.record_data_bar_tombstones();
