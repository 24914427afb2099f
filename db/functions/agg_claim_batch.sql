-- The runner's claim: the head of the queue (agg_get_due_tasks, limit 1) and,
-- when the head is a rollup or an indicators task with a few bars to do, or a
-- live ticks_1m task (ticks_task_is_live), up to p_batch_size - 1 more due tasks
-- of its kind and timeframe in the same state, so that agg_run_rollup_batch /
-- agg_run_indicators_batch / agg_run_ticks_batch run them all in one statement.
-- At a minute boundary every symbol of a bar-fed market has a bucket to close and
-- then its indicators to extend; one task a run costs ~4-5 ms each, a batch
-- shares that cost.
-- The batch is claimed like agg_get_due_tasks claims (idle and due, FOR UPDATE
-- SKIP LOCKED, the same order, a lease and a claim token each), and only tasks
-- with a few buckets of source past their cursor join it, or start it
-- (rollup_has_few_buckets_pending: live and late work; an indicators task's
-- source is its own timeframe's bars); a backfill runs alone. Its WHERE repeats
-- agg_get_due_tasks' due condition (FOR UPDATE cannot lock rows that come
-- through a function); tests/test_batch.py checks that both pick the same tasks.
CREATE OR REPLACE FUNCTION tickagg.agg_claim_batch(
    p_env text,
    p_now timestamptz,
    p_lease_seconds integer,
    p_batch_size integer DEFAULT NULL
)
RETURNS TABLE (
    canonical_symbol text,
    timeframe text,
    task_kind text,
    cursor_ts timestamptz,
    claim_token uuid,
    lease_expires_at timestamptz,
    is_mandatory boolean,
    task_priority integer,
    lag interval,
    status text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_head record;
    v_frame tickagg.timeframes;
    v_source_timeframe text;
    v_batchable boolean;
    v_batch_size integer := coalesce(p_batch_size, tickagg.setting('rollup_batch_size')::integer);
BEGIN
    IF p_lease_seconds IS NULL THEN
        RAISE EXCEPTION 'agg_claim_batch claims: p_lease_seconds is required'
            USING ERRCODE = 'TK004', HINT = 'To look without claiming, use agg_get_due_tasks without a lease.';
    END IF;
    SELECT * INTO v_head
    FROM tickagg.agg_get_due_tasks(
        p_env => p_env, p_now => p_now, p_limit => 1, p_lease_seconds => p_lease_seconds
    ) AS h;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    canonical_symbol := v_head.canonical_symbol;
    timeframe := v_head.timeframe;
    task_kind := v_head.task_kind;
    cursor_ts := v_head.cursor_ts;
    claim_token := v_head.claim_token;
    lease_expires_at := v_head.lease_expires_at;
    is_mandatory := v_head.is_mandatory;
    task_priority := v_head.task_priority;
    lag := v_head.lag;
    status := v_head.status;
    RETURN NEXT;

    SELECT * INTO v_frame FROM tickagg.timeframes AS t WHERE t.timeframe = v_head.timeframe;
    v_source_timeframe := CASE v_head.task_kind WHEN 'rollup' THEN v_frame.source_timeframe ELSE v_head.timeframe END;
    v_batchable := CASE
        WHEN v_head.task_kind = 'ticks_1m'
            THEN tickagg.ticks_task_is_live(v_head.canonical_symbol, v_head.cursor_ts, p_now)
        WHEN v_head.task_kind IN ('rollup', 'indicators')
            THEN tickagg.rollup_has_few_buckets_pending(
                v_head.canonical_symbol, v_source_timeframe, v_head.cursor_ts, v_frame.step
            )
        ELSE false
    END;
    IF v_batch_size < 2 OR NOT v_batchable THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH chosen AS MATERIALIZED (
        SELECT s.canonical_symbol, s.timeframe, s.task_kind
        FROM tickagg.data_agg_state AS s
        -- re-checked on the locked row version, so a task claimed meanwhile drops out
        WHERE
            s.task_kind = v_head.task_kind
            AND s.timeframe = v_head.timeframe
            AND CASE
                WHEN v_head.task_kind = 'ticks_1m'
                    THEN tickagg.ticks_task_is_live(s.canonical_symbol, s.last_agg_bar_ts_utc, p_now)
                ELSE tickagg.rollup_has_few_buckets_pending(
                    s.canonical_symbol, v_source_timeframe, s.last_agg_bar_ts_utc, v_frame.step
                )
            END
            AND s.enabled
            AND s.status = 'idle'
            AND (
                s.next_run_at <= p_now
                OR (
                    s.task_kind = 'rollup' AND s.transient_fail_streak = 0 AND s.hard_fail_streak = 0
                    AND (s.canonical_symbol, s.timeframe) IN (
                        SELECT i.canonical_symbol, i.timeframe FROM tickagg.agg_invalidations AS i
                    )
                )
            )
            AND s.canonical_symbol IN (
                SELECT r.canonical_symbol FROM tickagg.core_asset_registry_all AS r
                WHERE CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
            )
        ORDER BY
            s.is_mandatory DESC, s.task_priority ASC, s.last_agg_bar_ts_utc ASC, s.timeframe_step ASC
        LIMIT v_batch_size - 1
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE tickagg.data_agg_state AS s SET
        status = 'running',
        claim_token = gen_random_uuid(),
        lease_expires_at = p_now + make_interval(secs => p_lease_seconds),
        running_started_at_utc = p_now,
        last_attempt_at_utc = p_now,
        updated_at = p_now
    FROM chosen AS c
    WHERE s.canonical_symbol = c.canonical_symbol AND s.timeframe = c.timeframe AND s.task_kind = c.task_kind
    RETURNING
        s.canonical_symbol, s.timeframe, s.task_kind, s.last_agg_bar_ts_utc, s.claim_token,
        s.lease_expires_at, s.is_mandatory, s.task_priority, p_now - s.last_agg_bar_ts_utc, s.status;
END
$$;

COMMENT ON FUNCTION tickagg.agg_claim_batch(text, timestamptz, integer, integer) IS
'Claim the head of the due queue and, for a live rollup, indicators or ticks_1m head, up to p_batch_size - 1 more due tasks of its kind and timeframe.';
