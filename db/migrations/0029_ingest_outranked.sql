-- A bar file's row that a stored bar of a higher-ranked source keeps out was
-- counted as unchanged; users read that as "already there" (issue 23 item 14).
ALTER TABLE tickagg.ingest_batches ADD COLUMN rows_outranked bigint NOT NULL DEFAULT 0;
