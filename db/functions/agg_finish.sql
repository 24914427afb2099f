-- Close a claimed task run. Fenced: unless p_claim_token is still the task's
-- token (and, on success, the cursor is still p_cursor_from) it raises TK001 and
-- changes nothing, so a runner whose lease was taken over cannot write. Outcomes:
--   success   cursor -> p_cursor_to (never backwards, except an indicators
--             task's, which a correction rewinds; never past agg_cursor_limit,
--             TK004; an export's or retention's is the database clock's now()),
--             streaks reset; due again
--             at once when p_continue or woken during the run, else when it
--             has work (below)
--   transient retry after an exponential backoff with jitter
--   hard      counts toward hard_fail_threshold; at it the task becomes
--             hard_failed (mandatory) or disabled (optional)
--   release   hand the task back untouched, no attempt counted (graceful stop)
-- When a task has work (nothing runs for nothing; the write paths make tasks due
-- on events, see invalidate_from_data_bars and derived_bars_changed):
--   rollup    its pending_bucket_end (rollup_bucket_end at the new cursor) is
--             stored; the source writing data that reaches it, or the source's
--             cursor passing it, makes it due. The 5m task of a bar-fed symbol
--             is also due by time: a bucket whose last minutes never arrive
--             closes aggregation_delay after its end. It is due at the earliest
--             end, plus the delay, of a bucket of any level that holds 1m bars
--             not materialised yet and that its cursor does not close (so a
--             symbol whose bars stopped closes its 15m..1w buckets on time and
--             then costs nothing until new bars come).
--   ticks_1m  when ticks are waiting: at once when a later minute's tick (or a
--             late tick) closes one, else at the close of the minute its ticks are
--             in, plus its delay; with none, when a bucket of a level above that
--             holds 1m bars not materialised yet ends (its cursor must pass that
--             end for the bucket to close), plus the delay. A silent symbol costs
--             no runs: its next tick schedules it (ticks_record_late)
--   gap_scan  gap_scan_quiet_interval later; a 1m bar write brings it to
--             run_interval after the write
--   gap_scan_history, ticks_retention  run_interval later
--   export    when woken (bars to export, as they commit: export_wake), or its
--             interval later when changes above where it stopped are committed
--             (the horizon held them back behind a writer still open)
--   indicators and anything else: only when woken (a derived bar
--             written), at the latest idle_recheck_interval later
CREATE OR REPLACE FUNCTION tickagg.agg_finish(
    p_canonical_symbol text,
    p_timeframe text,
    p_task_kind text,
    p_claim_token uuid,
    p_outcome text,
    p_cursor_from timestamptz DEFAULT NULL,
    p_cursor_to timestamptz DEFAULT NULL,
    p_error text DEFAULT NULL,
    p_bars_written integer DEFAULT 0,
    p_continue boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
    v_streak integer;
    v_backoff interval;
    v_status text;
    v_cursor timestamptz;
    v_calendar_code text;
    v_source_kind text;
    v_source_timeframe text;
    v_woken boolean;
    v_bucket_end timestamptz;
    v_newest timestamptz;
    v_due timestamptz;
    v_limit timestamptz;
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('success', 'transient', 'hard', 'release') THEN
        RAISE EXCEPTION 'unknown outcome %', p_outcome
            USING ERRCODE = 'TK004', HINT = 'Use success, transient, hard or release.';
    END IF;

    SELECT * INTO v_task
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no task % % %', p_canonical_symbol, p_timeframe, p_task_kind USING ERRCODE = 'TK006';
    END IF;
    IF v_task.status <> 'running' OR v_task.claim_token IS DISTINCT FROM p_claim_token THEN
        RAISE EXCEPTION 'lease on % % % is no longer held by this claim', p_canonical_symbol, p_timeframe, p_task_kind
            USING ERRCODE = 'TK001',
                  HINT = 'Another runner reclaimed the task after the lease expired; raise the lease if runs are slow.';
    END IF;

    IF p_outcome = 'success' THEN
        -- woken by its source during this run (next_run_at moved into the run;
        -- a schedule still in the future is not a wake-up): due again at once
        v_woken := v_task.next_run_at > v_task.running_started_at_utc AND v_task.next_run_at <= clock_timestamp();
        IF p_cursor_from IS DISTINCT FROM v_task.last_agg_bar_ts_utc THEN
            RAISE EXCEPTION 'cursor of % % moved from % to % during the run',
                p_canonical_symbol, p_timeframe, p_cursor_from, v_task.last_agg_bar_ts_utc
                USING ERRCODE = 'TK001';
        END IF;
        v_cursor := CASE
            WHEN p_task_kind = 'indicators' THEN coalesce(p_cursor_to, v_task.last_agg_bar_ts_utc)
            -- their cursor records when a run finished: the database's clock, not the caller's
            WHEN p_task_kind IN ('export', 'ticks_retention')
                THEN greatest(v_task.last_agg_bar_ts_utc, least(p_cursor_to, now()))
            ELSE greatest(v_task.last_agg_bar_ts_utc, coalesce(p_cursor_to, v_task.last_agg_bar_ts_utc))
        END;
        -- a caller's cursor is not trusted past what the task's source has
        IF v_cursor > v_task.last_agg_bar_ts_utc THEN
            v_limit := tickagg.agg_cursor_limit(p_canonical_symbol, p_timeframe, p_task_kind, v_cursor);
            IF v_cursor > v_limit THEN
                RAISE EXCEPTION 'cursor of % % % cannot move to %: past its frontier %',
                    p_canonical_symbol, p_timeframe, p_task_kind, v_cursor, v_limit
                    USING ERRCODE = 'TK004',
                          HINT = 'A run never passes what its source has; `tickagg tasks reset --cursor` repairs a cursor.';
            END IF;
        END IF;
        IF p_task_kind = 'rollup' THEN
            SELECT r.calendar_code, r.source_kind, t.source_timeframe
            INTO v_calendar_code, v_source_kind, v_source_timeframe
            FROM tickagg.core_asset_registry_all AS r
            CROSS JOIN tickagg.timeframes AS t
            WHERE r.canonical_symbol = p_canonical_symbol AND t.timeframe = p_timeframe;
            v_bucket_end := tickagg.rollup_bucket_end(v_calendar_code, p_timeframe, v_cursor);
            IF v_source_timeframe = '1m' AND v_source_kind <> 'ticks' AND NOT (p_continue OR v_woken) THEN
                SELECT max(b.ts_utc) INTO v_newest
                FROM tickagg.data_bars AS b
                WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m';
                -- the levels' buckets around the cursor nest: the earliest end
                -- among those holding bars not materialised yet is the first to close
                SELECT min(x.bucket_end) + v_task.aggregation_delay INTO v_due
                FROM (
                    SELECT v_bucket_end AS bucket_end WHERE v_newest >= v_cursor
                    UNION ALL
                    SELECT upper(b.bounds)
                    FROM tickagg.data_agg_state AS s
                    CROSS JOIN LATERAL tickagg.bucket_bounds(v_calendar_code, s.timeframe, v_cursor) AS b (bounds)
                    WHERE
                        s.canonical_symbol = p_canonical_symbol AND s.task_kind = 'rollup' AND s.enabled
                        AND s.timeframe <> p_timeframe
                        AND s.last_agg_bar_ts_utc <= v_newest AND lower(b.bounds) <= v_newest
                ) AS x;
            END IF;
        ELSIF p_task_kind = 'export' AND NOT p_continue THEN
            -- changes committed above where the run stopped: the horizon held them
            -- back behind a writer still open (of any symbol), and their own
            -- wake-ups came before this run; due after its interval, not at the
            -- idle recheck
            IF EXISTS (
                SELECT FROM tickagg.data_bars AS d
                WHERE d.canonical_symbol = p_canonical_symbol AND d.change_no > v_task.export_change_no
            ) OR EXISTS (
                SELECT FROM tickagg.derived_data_bars AS b
                WHERE b.canonical_symbol = p_canonical_symbol AND b.change_no > v_task.export_change_no
            ) OR EXISTS (
                SELECT FROM tickagg.data_bars_tombstones AS t
                WHERE t.canonical_symbol = p_canonical_symbol AND t.change_no > v_task.export_change_no
            ) OR EXISTS (
                SELECT FROM tickagg.derived_bar_indicators AS i
                WHERE i.canonical_symbol = p_canonical_symbol AND i.change_no > v_task.export_change_no
            ) THEN
                v_due := now() + v_task.run_interval;
            END IF;
        ELSIF p_task_kind = 'ticks_1m' AND NOT p_continue THEN
            -- the run's own data decides, not a wake-up during it: a tick whose
            -- trigger woke the task before the run locked its row was read by the run
            SELECT max(t.ts_utc) INTO v_newest
            FROM tickagg.ticks AS t
            WHERE t.canonical_symbol = p_canonical_symbol AND t.ts_utc >= v_cursor;
            IF v_newest >= v_cursor + interval '1 minute' OR EXISTS (
                SELECT 1 FROM tickagg.agg_invalidations AS i
                WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = '1m'
            ) THEN
                v_due := now();
            ELSIF v_newest IS NOT NULL THEN
                v_due := v_cursor + interval '1 minute' + v_task.aggregation_delay;
            ELSE
                SELECT r.calendar_code INTO v_calendar_code
                FROM tickagg.core_asset_registry_all AS r
                WHERE r.canonical_symbol = p_canonical_symbol;
                SELECT max(b.ts_utc) INTO v_newest
                FROM tickagg.data_bars AS b
                WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m';
                -- at each level the bucket of the last closed minute is the only one
                -- that can hold bars and still be open
                SELECT min(upper(b.bounds)) + v_task.aggregation_delay INTO v_due
                FROM tickagg.data_agg_state AS s
                CROSS JOIN LATERAL tickagg.bucket_bounds(
                    v_calendar_code, s.timeframe, v_cursor - interval '1 minute'
                ) AS b (bounds)
                WHERE
                    s.canonical_symbol = p_canonical_symbol AND s.task_kind = 'rollup' AND s.enabled
                    AND s.last_agg_bar_ts_utc <= v_newest AND lower(b.bounds) <= v_newest
                    AND upper(b.bounds) > v_cursor;
            END IF;
        END IF;

        UPDATE tickagg.data_agg_state AS s SET
            last_agg_bar_ts_utc = v_cursor,
            pending_bucket_end = v_bucket_end,
            status = 'idle',
            claim_token = NULL,
            lease_expires_at = NULL,
            running_started_at_utc = NULL,
            hard_fail_streak = 0,
            transient_fail_streak = 0,
            last_error = NULL,
            last_successful_at_utc = now(),
            runs_total = s.runs_total + 1,
            bars_written_total = s.bars_written_total + coalesce(p_bars_written, 0),
            next_run_at = CASE
                WHEN p_continue THEN now()
                -- (v_due, above: a wake-up during its run was for ticks the run read)
                WHEN s.task_kind = 'ticks_1m'
                    THEN least(now() + tickagg.setting('idle_recheck_interval')::interval, v_due)
                WHEN v_woken THEN now()
                WHEN s.task_kind = 'gap_scan' THEN now() + tickagg.setting('gap_scan_quiet_interval')::interval
                WHEN s.task_kind IN ('gap_scan_history', 'ticks_retention') THEN now() + s.run_interval
                -- (v_due: NULL but for a bar-fed 5m task, least() skips it)
                ELSE least(now() + tickagg.setting('idle_recheck_interval')::interval, v_due)
            END,
            updated_at = now()
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind;

        -- A source whose cursor advanced may have closed buckets of the timeframes
        -- built from it, even when it wrote no bar (a quiet stretch). A gap scan's
        -- cursor (how far it has looked) builds nothing.
        IF p_cursor_to > v_task.last_agg_bar_ts_utc AND p_task_kind IN ('rollup', 'ticks_1m') THEN
            UPDATE tickagg.data_agg_state AS s SET next_run_at = clock_timestamp()
            FROM tickagg.timeframes AS t
            WHERE
                t.source_timeframe = p_timeframe
                AND s.canonical_symbol = p_canonical_symbol
                AND s.timeframe = t.timeframe
                AND s.task_kind = 'rollup'
                -- only a dependent whose pending bucket the new cursor closes, or one
                -- whose cursor is a whole step behind it (a cursor moved back, as a
                -- restore does, left its pending bucket later than its cursor's)
                AND (
                    s.pending_bucket_end IS NULL OR s.pending_bucket_end <= v_cursor
                    OR s.last_agg_bar_ts_utc + s.timeframe_step <= v_cursor
                )
                -- a running dependent may have read the old frontier: its own finish
                -- sees next_run_at past its claim and makes it due again at once
                AND (s.next_run_at > clock_timestamp() OR s.status = 'running');
            PERFORM pg_notify('tickagg_work', '');
        END IF;
        -- indicator values have no trigger of their own (bars' writes wake export there)
        IF p_task_kind = 'indicators' AND p_bars_written > 0 THEN
            PERFORM tickagg.export_wake(ARRAY[p_canonical_symbol]);
        END IF;
        RETURN jsonb_build_object('status', 'idle', 'cursor', v_cursor);
    END IF;

    IF p_outcome = 'release' THEN
        UPDATE tickagg.data_agg_state AS s SET
            status = 'idle', claim_token = NULL, lease_expires_at = NULL, running_started_at_utc = NULL,
            next_run_at = now(), updated_at = now()
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind;
        RETURN jsonb_build_object('status', 'idle');
    END IF;

    v_streak := CASE p_outcome
        WHEN 'transient' THEN v_task.transient_fail_streak + 1
        ELSE v_task.hard_fail_streak + 1
    END;
    v_backoff := make_interval(secs => least(
        tickagg.setting('backoff_base_seconds')::double precision * 2 ^ (v_streak - 1),
        tickagg.setting('backoff_max_seconds')::double precision
    ) * (0.75 + random() * 0.5));
    v_status := CASE
        WHEN p_outcome = 'hard' AND v_streak >= tickagg.setting('hard_fail_threshold')::integer
            THEN CASE WHEN v_task.is_mandatory THEN 'hard_failed' ELSE 'disabled' END
        ELSE 'idle'
    END;

    UPDATE tickagg.data_agg_state AS s SET
        status = v_status,
        claim_token = NULL,
        lease_expires_at = NULL,
        running_started_at_utc = NULL,
        transient_fail_streak = CASE WHEN p_outcome = 'transient' THEN v_streak ELSE s.transient_fail_streak END,
        hard_fail_streak = CASE WHEN p_outcome = 'hard' THEN v_streak ELSE s.hard_fail_streak END,
        failures_total = s.failures_total + 1,
        runs_total = s.runs_total + 1,
        last_error = left(p_error, 2000),
        next_run_at = now() + v_backoff,
        updated_at = now()
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind;

    RETURN jsonb_build_object('status', v_status, 'streak', v_streak, 'retry_in_seconds', extract(EPOCH FROM v_backoff));
END
$$;

COMMENT ON FUNCTION tickagg.agg_finish(text, text, text, uuid, text, timestamptz, timestamptz, text, integer, boolean) IS
'Finish a claimed run, fenced by its claim token: success moves the cursor, failures back off and count toward hard_failed/disabled, release returns the task.';
