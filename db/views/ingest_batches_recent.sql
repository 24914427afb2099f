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
    b.rows_rejected,
    b.rows_outranked
FROM tickagg.ingest_batches AS b
ORDER BY b.batch_id DESC;

COMMENT ON VIEW tickagg.ingest_batches_recent IS
'Bar ingest batches with rows total, landed, unchanged, rejected and outranked (kept out by a stored bar of a higher-ranked source), newest first.';
