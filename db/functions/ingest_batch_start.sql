-- A new ingest batch for a file, before any of its rows: a file landed by several
-- sessions at once (ingest_staged_bars's parts) needs its batch before the first
-- chunk, so that every part counts into the same one.
CREATE OR REPLACE FUNCTION tickagg.ingest_batch_start(p_file_name text)
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    INSERT INTO tickagg.ingest_batches (file_name) VALUES (p_file_name) RETURNING batch_id;
$$;

COMMENT ON FUNCTION tickagg.ingest_batch_start(text) IS
'Open an ingest batch for a file whose chunks (or parts of chunks) are landed later with its batch id.';
