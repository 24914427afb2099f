-- Close a claimed task run. Fenced: unless p_claim_token is still the task's
-- token (and, on success, the cursor is still p_cursor_from) it raises TK001 and
-- changes nothing, so a runner whose lease was taken over cannot write. Outcomes:
--   success   cursor -> p_cursor_to (never backwards, except an indicators
--             task's, which a correction rewinds), streaks reset; due again
--             at once when p_continue, else after run_interval
--   transient retry after an exponential backoff with jitter
--   hard      counts toward hard_fail_threshold; at it the task becomes
--             hard_failed (mandatory) or disabled (optional)
--   release   hand the task back untouched, no attempt counted (graceful stop)
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
        IF p_cursor_from IS DISTINCT FROM v_task.last_agg_bar_ts_utc THEN
            RAISE EXCEPTION 'cursor of % % moved from % to % during the run',
                p_canonical_symbol, p_timeframe, p_cursor_from, v_task.last_agg_bar_ts_utc
                USING ERRCODE = 'TK001';
        END IF;
        UPDATE tickagg.data_agg_state AS s SET
            last_agg_bar_ts_utc = CASE
                WHEN p_task_kind = 'indicators' THEN coalesce(p_cursor_to, s.last_agg_bar_ts_utc)
                ELSE greatest(s.last_agg_bar_ts_utc, coalesce(p_cursor_to, s.last_agg_bar_ts_utc))
            END,
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
            -- woken by its source during this run (next_run_at moved into the run;
            -- a schedule still in the future is not a wake-up) or more to do: due again at once
            next_run_at = CASE
                WHEN p_continue
                    OR (s.next_run_at > s.running_started_at_utc AND s.next_run_at <= clock_timestamp())
                    THEN now()
                -- a ticks_1m task has work when the next minute closes, not a run_interval later
                WHEN s.task_kind = 'ticks_1m'
                    THEN least(
                        now() + s.run_interval,
                        date_trunc('minute', now() - s.aggregation_delay) + interval '1 minute' + s.aggregation_delay
                    )
                ELSE now() + s.run_interval
            END,
            updated_at = now()
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind
        RETURNING s.last_agg_bar_ts_utc INTO v_cursor;

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
                -- a running dependent may have read the old frontier: its own finish
                -- sees next_run_at past its claim and makes it due again at once
                AND (s.next_run_at > clock_timestamp() OR s.status = 'running');
            PERFORM pg_notify('tickagg_work', '');
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
