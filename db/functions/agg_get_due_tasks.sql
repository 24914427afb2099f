-- Due tasks of an environment ('prod' uses registry.active, 'test' test_active).
-- Without p_lease_seconds it only lists them, taking no locks, so psql can look
-- without disturbing a daemon (in priority order: the claims' longest-wait
-- share below is left out; the view task_waits shows the waits). With it, it first reclaims tasks whose lease
-- expired, then claims idle due tasks with FOR UPDATE SKIP LOCKED, so many
-- runners never claim the same task, and hands out claim tokens. Order: in a
-- share of the claims (setting claim_aged_share, at random), first tasks due
-- for longer than the setting claim_max_wait, longest wait first
-- (idx_agg_state_next_run), whatever their kind and priority, so no kind starves
-- under load and a due task's wait is bounded, while live work keeps the other
-- claims and does not queue behind a whole backlog; then mandatory first,
-- task_priority, the longest lag, then the shorter timeframe (by step, never by
-- its code as text), walking idx_agg_state_due_priority in exactly that order.
-- So rollups (priority 100) go before indicators (120) and gap scans (150)
-- during a backfill until the others have waited claim_max_wait. Every step
-- stops at p_limit, so the cost does not grow with the number of tasks.
-- The listing and the claim repeat one WHERE on purpose: FOR UPDATE cannot lock
-- rows that come through a function, and a view could not take p_now and p_env.
CREATE OR REPLACE FUNCTION tickagg.agg_get_due_tasks(
    p_env text,
    p_now timestamptz DEFAULT now(),
    p_limit integer DEFAULT 100,
    p_lease_seconds integer DEFAULT NULL
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
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
AS $$
DECLARE
    v_reclaimed integer;
    v_aged integer;
    v_waited_since timestamptz;
    v_first_priority integer;
BEGIN
    IF p_env IS NULL OR p_env NOT IN ('prod', 'test') THEN
        RAISE EXCEPTION 'unknown environment %', p_env
            USING ERRCODE = 'TK004', HINT = 'Use ''prod'' (registry.active) or ''test'' (registry.test_active).';
    END IF;

    IF p_lease_seconds IS NULL THEN
        RETURN QUERY
        SELECT
            s.canonical_symbol, s.timeframe, s.task_kind, s.last_agg_bar_ts_utc, NULL::uuid,
            s.lease_expires_at, s.is_mandatory, s.task_priority, p_now - s.last_agg_bar_ts_utc, s.status
        FROM tickagg.data_agg_state AS s
        WHERE s.status = 'running' AND s.lease_expires_at < p_now AND s.enabled
        ORDER BY s.lease_expires_at
        LIMIT p_limit;
        GET DIAGNOSTICS v_reclaimed = ROW_COUNT;
        RETURN QUERY
        SELECT
            s.canonical_symbol, s.timeframe, s.task_kind, s.last_agg_bar_ts_utc, NULL::uuid,
            s.lease_expires_at, s.is_mandatory, s.task_priority, p_now - s.last_agg_bar_ts_utc, s.status
        FROM tickagg.data_agg_state AS s
        WHERE
            s.enabled
            AND s.status = 'idle'
            AND (
                s.next_run_at <= p_now
                -- pending invalidations, unless backing off after a failure; hashed once
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
        LIMIT p_limit - v_reclaimed;
        RETURN;
    END IF;

    IF p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'p_lease_seconds must be positive, got %', p_lease_seconds USING ERRCODE = 'TK004';
    END IF;

    -- Expired leases first: their runner died, the work has waited longest.
    RETURN QUERY
    WITH chosen AS MATERIALIZED (
        SELECT s.canonical_symbol, s.timeframe, s.task_kind
        FROM tickagg.data_agg_state AS s
        WHERE s.status = 'running' AND s.lease_expires_at < p_now AND s.enabled
        ORDER BY s.lease_expires_at
        LIMIT p_limit
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE tickagg.data_agg_state AS s SET
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
    GET DIAGNOSTICS v_reclaimed = ROW_COUNT;
    IF v_reclaimed >= p_limit THEN
        RETURN;
    END IF;

    -- Then, in a share of the claims, what has waited longest, once it has
    -- waited claim_max_wait.
    v_aged := 0;
    v_waited_since := p_now - coalesce(tickagg.setting('claim_max_wait')::interval, interval '5 minutes');
    IF random() < coalesce(tickagg.setting('claim_aged_share')::double precision, 0.5) THEN
        RETURN QUERY
        WITH chosen AS MATERIALIZED (
            SELECT s.canonical_symbol, s.timeframe, s.task_kind
            FROM tickagg.data_agg_state AS s
            WHERE
                s.enabled AND s.status = 'idle' AND s.next_run_at <= v_waited_since
                AND s.canonical_symbol IN (
                    SELECT r.canonical_symbol FROM tickagg.core_asset_registry_all AS r
                    WHERE CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
                )
            ORDER BY s.next_run_at
            LIMIT p_limit - v_reclaimed
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
        GET DIAGNOSTICS v_aged = ROW_COUNT;
        IF v_reclaimed + v_aged >= p_limit THEN
            RETURN;
        END IF;
    END IF;

    -- The walk starts at the highest priority that has a task due (one probe of
    -- idx_agg_state_priority_due per priority):
    -- rows of higher priorities are then passed over in the index alone, not
    -- read one by one from the heap to find them not due. With 98,000 tasks and
    -- a backlog of low-priority tasks due behind 70,000 rollup and indicators
    -- tasks that were not, a claim took 31-110 ms (bench_live_scale).
    WITH RECURSIVE priorities (priority) AS (
        SELECT min(d.task_priority) FROM tickagg.data_agg_state AS d WHERE d.enabled AND d.status = 'idle'
        UNION ALL
        SELECT (
            SELECT min(d.task_priority) FROM tickagg.data_agg_state AS d
            WHERE d.enabled AND d.status = 'idle' AND d.task_priority > pr.priority
        )
        FROM priorities AS pr
        WHERE pr.priority IS NOT NULL
    )
    SELECT min(pr.priority) INTO v_first_priority
    FROM priorities AS pr
    WHERE EXISTS (
        SELECT 1 FROM tickagg.data_agg_state AS d
        WHERE d.enabled AND d.status = 'idle' AND d.task_priority = pr.priority AND d.next_run_at <= p_now
    );
    -- a rollup task with pending invalidations is due whatever its next_run_at:
    -- then the walk starts at the head, as it always did (joining the pending
    -- invalidations to their tasks here cost 29 ms a claim while a market's
    -- 15m buckets closed, in bench_live_scale)
    IF EXISTS (SELECT 1 FROM tickagg.agg_invalidations) THEN
        v_first_priority := (
            SELECT min(d.task_priority) FROM tickagg.data_agg_state AS d WHERE d.enabled AND d.status = 'idle'
        );
    END IF;
    IF v_first_priority IS NULL THEN
        RETURN;  -- nothing due
    END IF;

    RETURN QUERY
    WITH chosen AS MATERIALIZED (
        SELECT s.canonical_symbol, s.timeframe, s.task_kind
        FROM tickagg.data_agg_state AS s
        -- re-checked on the locked row version, so a task claimed meanwhile drops out
        WHERE
            s.task_priority >= v_first_priority
            AND s.enabled
            AND s.status = 'idle'
            AND (
                s.next_run_at <= p_now
                -- pending invalidations, unless backing off after a failure; hashed once
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
        LIMIT p_limit - v_reclaimed - v_aged
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

COMMENT ON FUNCTION tickagg.agg_get_due_tasks(text, timestamptz, integer, integer) IS
'List (p_lease_seconds NULL) or claim (with a lease) the due tasks of an environment; safe with many concurrent runners.';
