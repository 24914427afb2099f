-- Claim one symbol's export task for a one-shot `tickagg export`, like
-- agg_get_due_tasks would (idle, or running with an expired lease), due or not.
-- Returns the claim token, or NULL when another runner holds the task. The run
-- ends with export_advance + agg_finish as a runner's does.
CREATE OR REPLACE FUNCTION tickagg.export_claim(
    p_canonical_symbol text,
    p_lease_seconds integer DEFAULT 300
)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_token uuid := gen_random_uuid();
BEGIN
    UPDATE tickagg.data_agg_state AS s SET
        status = 'running',
        claim_token = v_token,
        lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
        running_started_at_utc = clock_timestamp(),
        last_attempt_at_utc = clock_timestamp(),
        updated_at = now()
    WHERE
        s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export'
        AND s.enabled
        AND (s.status = 'idle' OR (s.status = 'running' AND s.lease_expires_at < clock_timestamp()));
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN v_token;
END
$$;

COMMENT ON FUNCTION tickagg.export_claim(text, integer) IS
'Claim a symbol''s export task for a one-shot export; NULL when another runner holds it.';
