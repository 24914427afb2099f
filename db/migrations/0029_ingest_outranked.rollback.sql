-- The view that shows the column is re-created by the next migrate without it.
DROP VIEW IF EXISTS tickagg.ingest_batches_recent;
ALTER TABLE tickagg.ingest_batches DROP COLUMN rows_outranked;
