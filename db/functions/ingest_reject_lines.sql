-- Lines of a bar file that could not even be read as CSV records (bytes that are
-- not UTF-8 text, a NUL byte, a field over csv's limit, a quote never closed),
-- found by the runner's re-read of a chunk that did not COPY: kept in
-- ingest_rejects with their line and reason like every rejected row, and counted
-- in their batch, so the rows around them land and the file's totals add up.
-- The line's text is kept as the runner read it (runner.file_chunks.records:
-- such bytes replaced, cut at 1,000 characters). SECURITY DEFINER: the runner role writes no table itself.
CREATE OR REPLACE FUNCTION tickagg.ingest_reject_lines(
    p_batch_id bigint,
    p_line_nos bigint[],
    p_reasons text[],
    p_raw_lines text[]
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_rejected bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tickagg.ingest_batches AS b WHERE b.batch_id = p_batch_id) THEN
        RAISE EXCEPTION 'no ingest batch %', p_batch_id USING ERRCODE = 'TK004';
    END IF;
    INSERT INTO tickagg.ingest_rejects (batch_id, line_no, raw_row, reason)
    SELECT p_batch_id, r.line_no, jsonb_build_object('line', left(r.raw_line, 1000)), left(r.reason, 2000)
    FROM unnest(p_line_nos, p_reasons, p_raw_lines) AS r (line_no, reason, raw_line)
    WHERE r.line_no IS NOT NULL AND r.reason IS NOT NULL
    ON CONFLICT (batch_id, line_no) DO NOTHING;
    GET DIAGNOSTICS v_rejected = ROW_COUNT;

    UPDATE tickagg.ingest_batches AS ib SET
        rows_total = ib.rows_total + v_rejected,
        rows_rejected = ib.rows_rejected + v_rejected
    WHERE ib.batch_id = p_batch_id;
    RETURN jsonb_build_object('rows_rejected', v_rejected);
END
$$;

COMMENT ON FUNCTION tickagg.ingest_reject_lines(bigint, bigint[], text[], text[]) IS
'Reject lines of a bar file that are not readable CSV records (with line and reason) into ingest_rejects and count them in their batch.';
