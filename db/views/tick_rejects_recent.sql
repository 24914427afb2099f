-- The newest rejected ticks with their reason, from files and from ingest_ticks.
CREATE OR REPLACE VIEW tickagg.tick_rejects_recent AS
SELECT
    r.reject_id,
    r.batch_id,
    b.file_name,
    r.line_no,
    r.canonical_symbol,
    r.reason,
    r.raw_row,
    r.rejected_at
FROM tickagg.tick_rejects AS r
LEFT JOIN tickagg.ingest_batches AS b ON b.batch_id = r.batch_id
ORDER BY r.reject_id DESC
LIMIT 1000;

COMMENT ON VIEW tickagg.tick_rejects_recent IS
'The 1000 newest rejected ticks: batch and line (files) or array position (ingest_ticks), and the reason.';
