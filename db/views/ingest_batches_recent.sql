-- Bar ingest batches (one per `ingest bars` file or API call) with their row
-- counts, newest first: what the dashboard plots as rows landed and rejected.
CREATE OR REPLACE VIEW tickagg.ingest_batches_recent AS
SELECT
    b.batch_id,
    b.file_name,
    b.ingested_at,
    b.rows_total,
    b.rows_landed,
    b.rows_unchanged,
    b.rows_rejected
FROM tickagg.ingest_batches AS b
ORDER BY b.batch_id DESC;

COMMENT ON VIEW tickagg.ingest_batches_recent IS
'Bar ingest batches with rows total, landed, unchanged and rejected, newest first.';
