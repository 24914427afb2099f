-- ingest_rejects loses its foreign key to ingest_batches: checking it once per
-- rejected row cost about a quarter of an all-rejected file's ingest. The same
-- guarantee now costs one statement per chunk: ingest_staged_bars locks its
-- batch row (FOR KEY SHARE) before writing rejects, so the batch cannot be
-- deleted until the chunk commits, and deleting or truncating batches deletes
-- their rejects (the trigger function ingest_batches_deleted, db/post).
ALTER TABLE tickagg.ingest_rejects DROP CONSTRAINT ingest_rejects_batch_id_fkey;
