-- Rejected ingest rows with their file, newest batch first.
CREATE OR REPLACE VIEW tickagg.ingest_rejects_recent AS
SELECT
    b.batch_id,
    b.file_name,
    b.ingested_at,
    r.line_no,
    r.reason,
    r.raw_row
FROM tickagg.ingest_rejects AS r
INNER JOIN tickagg.ingest_batches AS b ON b.batch_id = r.batch_id
ORDER BY b.batch_id DESC, r.line_no;
