-- Move an export task's cursor (export_change_no) after ClickHouse accepted a
-- batch. Fenced like agg_finish: the caller must still hold the claim
-- (p_claim_token) and the cursor must still be p_from_change_no, else TK001 and
-- nothing changes. Never moves backwards. The caller then finishes the run with
-- agg_finish in the same transaction.
CREATE OR REPLACE FUNCTION tickagg.export_advance(
    p_canonical_symbol text,
    p_claim_token uuid,
    p_from_change_no bigint,
    p_to_change_no bigint
)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
BEGIN
    SELECT * INTO v_task FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no export task for %', p_canonical_symbol USING ERRCODE = 'TK006',
            HINT = 'Run tickagg sync with a ClickHouse URL configured (or tickagg export).';
    END IF;
    IF v_task.status <> 'running' OR v_task.claim_token IS DISTINCT FROM p_claim_token THEN
        RAISE EXCEPTION 'lease on % 1m export is no longer held by this claim', p_canonical_symbol
            USING ERRCODE = 'TK001',
                  HINT = 'Another runner reclaimed the task after the lease expired; raise the lease if runs are slow.';
    END IF;
    IF v_task.export_change_no IS DISTINCT FROM p_from_change_no THEN
        RAISE EXCEPTION 'export cursor of % moved from % to % during the run',
            p_canonical_symbol, p_from_change_no, v_task.export_change_no USING ERRCODE = 'TK001';
    END IF;
    UPDATE tickagg.data_agg_state AS s SET
        export_change_no = greatest(s.export_change_no, p_to_change_no), updated_at = now()
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export';
    RETURN greatest(v_task.export_change_no, p_to_change_no);
END
$$;

COMMENT ON FUNCTION tickagg.export_advance(text, uuid, bigint, bigint) IS
'Advance an export task''s change_no cursor after ClickHouse accepted a batch; fenced by the claim token and old cursor.';
