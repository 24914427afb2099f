-- Undo 0021: the foreign key again (rejects whose batch is gone cannot have one).
DELETE FROM tickagg.ingest_rejects AS r
WHERE NOT EXISTS (
        SELECT 1 FROM tickagg.ingest_batches AS b
        WHERE b.batch_id = r.batch_id
    );
ALTER TABLE tickagg.ingest_rejects
ADD CONSTRAINT ingest_rejects_batch_id_fkey FOREIGN KEY (batch_id)
REFERENCES tickagg.ingest_batches (batch_id) ON DELETE CASCADE;
