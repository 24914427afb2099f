-- Move the export horizon: the highest change_no below which no transaction can
-- still commit a bar. change_no comes from a sequence, so a writer that took 100
-- may commit after one that took 101 was exported. Protocol: read the
-- sequence's last value L, then the virtual transaction ids running now (every
-- writer holding a number <= L took it before, so it is one of them or has
-- ended). L becomes safe once all of them have ended: at once when none is
-- running, otherwise on a later call. Never blocks: when another exporter holds
-- the horizon row, the current safe value is returned unchanged.
CREATE OR REPLACE FUNCTION tickagg.export_horizon_advance()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_h tickagg.export_horizon%ROWTYPE;
    v_safe bigint;
    v_last bigint;
    v_vxids text[];
BEGIN
    SELECT * INTO v_h FROM tickagg.export_horizon WHERE singleton FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN (SELECT h.safe_change_no FROM tickagg.export_horizon AS h WHERE h.singleton);
    END IF;
    v_safe := v_h.safe_change_no;

    -- the pending candidate is safe once none of its transactions is running
    IF v_h.pending_change_no IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks AS l
        WHERE l.locktype = 'virtualxid' AND l.granted AND l.virtualxid = ANY(v_h.pending_vxids)
    ) THEN
        v_safe := greatest(v_safe, v_h.pending_change_no);
    END IF;

    -- a new candidate: first the last number handed out, then who is running
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO v_last
    FROM tickagg.bar_change_seq AS s;
    -- autovacuum never takes a change number: waiting for it only held export back
    SELECT coalesce(array_agg(l.virtualxid), '{}') INTO v_vxids
    FROM pg_catalog.pg_locks AS l
    WHERE
        l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid()
        AND l.pid NOT IN (
            SELECT a.pid FROM pg_catalog.pg_stat_activity AS a WHERE a.backend_type = 'autovacuum worker'
        );
    IF cardinality(v_vxids) = 0 THEN
        v_safe := greatest(v_safe, v_last);
    END IF;

    UPDATE tickagg.export_horizon AS h SET
        safe_change_no = v_safe,
        pending_change_no = CASE WHEN v_last > v_safe THEN v_last END,
        pending_vxids = CASE WHEN v_last > v_safe THEN v_vxids END,
        updated_at = now()
    WHERE h.singleton;
    RETURN v_safe;
END
$$;

COMMENT ON FUNCTION tickagg.export_horizon_advance() IS
'Advance and return the export horizon: every change_no up to it belongs to an ended transaction.';
