-- The furthest a task's cursor may be set: what its source has. A finish
-- (agg_finish, agg_finish_batch) and `tasks reset --cursor` refuse a cursor past
-- it, so whoever holds a claim (the runner role) cannot move a cursor to 2090,
-- past every bar to come, where no run could bring it back. Each bound is what
-- the task's own run may reach, read no earlier than the run read it (a finish
-- runs after its run, cursors and the clock only move forward):
--   rollup on 1m bars    newest 1m bar + 1 minute, or now() - its delay
--                        (catchup_aggregation_range's frontier)
--   rollup on ticks_1m   the ticks_1m task's cursor
--   rollup on a rollup   its source task's cursor
--   rollup, also         the start of the bucket of the first source row at or
--                        after its cursor (a run skips the empty buckets before
--                        it), and its first bucket (rollup_first_bucket)
--   ticks_1m             the minute of the newest tick, or of now() - its delay
--                        (ticks_aggregate_minutes)
--   indicators           the end of the newest bar of its timeframe (indicators_step)
--   gap scans, export, ticks_retention   now(): their cursor records how far a
--                        scan looked or when a run finished
-- and never before agg_start (a run starts there). With p_cursor, a rollup's
-- limit is returned as soon as p_cursor is within its source's frontier (the
-- lookups past it only matter for a cursor beyond it, and a live batch finishes
-- hundreds of tasks). Not SECURITY DEFINER: it reads tables only for the
-- functions that call it.
CREATE OR REPLACE FUNCTION tickagg.agg_cursor_limit(
    p_canonical_symbol text,
    p_timeframe text,
    p_task_kind text,
    p_cursor timestamptz DEFAULT NULL
)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
    v_calendar_code text;
    v_source_kind text;
    v_source_timeframe text;
    v_limit timestamptz;
    v_next_source_ts timestamptz;
BEGIN
    SELECT * INTO v_task
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = p_task_kind;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    IF p_task_kind = 'ticks_1m' THEN
        SELECT date_trunc('minute', max(t.ts_utc)) INTO v_limit
        FROM tickagg.ticks AS t
        WHERE t.canonical_symbol = p_canonical_symbol AND t.ts_utc >= v_task.last_agg_bar_ts_utc;
        RETURN greatest(
            v_limit, date_trunc('minute', now()), date_trunc('minute', now() - v_task.aggregation_delay),
            v_task.agg_start_utc
        );
    ELSIF p_task_kind = 'indicators' THEN
        SELECT b.bucket_end INTO v_limit
        FROM tickagg.derived_data_bars AS b
        WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe
        ORDER BY b.ts_utc DESC
        LIMIT 1;
        RETURN greatest(v_limit, v_task.agg_start_utc);
    ELSIF p_task_kind <> 'rollup' THEN
        RETURN greatest(now(), v_task.agg_start_utc);
    END IF;

    SELECT r.calendar_code, r.source_kind, t.source_timeframe
    INTO v_calendar_code, v_source_kind, v_source_timeframe
    FROM tickagg.core_asset_registry_all AS r
    CROSS JOIN tickagg.timeframes AS t
    WHERE r.canonical_symbol = p_canonical_symbol AND t.timeframe = p_timeframe;
    IF v_source_timeframe = '1m' AND v_source_kind = 'ticks' THEN
        SELECT s.last_agg_bar_ts_utc INTO v_limit
        FROM tickagg.data_agg_state AS s
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m';
    ELSIF v_source_timeframe = '1m' THEN
        SELECT max(b.ts_utc) + interval '1 minute' INTO v_limit
        FROM tickagg.data_bars AS b
        WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m';
        v_limit := greatest(v_limit, now() - v_task.aggregation_delay);
    ELSE
        SELECT s.last_agg_bar_ts_utc INTO v_limit
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = p_canonical_symbol AND s.timeframe = v_source_timeframe AND s.task_kind = 'rollup';
    END IF;

    IF p_cursor <= v_limit THEN
        RETURN v_limit;
    END IF;

    IF v_source_timeframe = '1m' THEN
        SELECT min(b.ts_utc) INTO v_next_source_ts
        FROM tickagg.data_bars AS b
        WHERE
            b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m'
            AND b.ts_utc >= v_task.last_agg_bar_ts_utc;
    ELSE
        SELECT min(d.ts_utc) INTO v_next_source_ts
        FROM tickagg.derived_data_bars AS d
        WHERE
            d.canonical_symbol = p_canonical_symbol AND d.timeframe = v_source_timeframe
            AND d.ts_utc >= v_task.last_agg_bar_ts_utc AND d.deleted_at IS NULL;
    END IF;

    RETURN greatest(
        v_limit,
        coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_next_source_ts)), v_next_source_ts),
        -- (the first bucket lies within 15 days after agg_start: see catchup_aggregation_range)
        CASE
            WHEN v_task.last_agg_bar_ts_utc < v_task.agg_start_utc + interval '15 days'
                THEN tickagg.rollup_first_bucket(p_canonical_symbol, p_timeframe, v_calendar_code, v_task.agg_start_utc)
        END,
        v_task.agg_start_utc
    );
END
$$;

COMMENT ON FUNCTION tickagg.agg_cursor_limit(text, text, text, timestamptz) IS
'The furthest a task''s cursor may be set (its source''s frontier); agg_finish, agg_finish_batch and agg_task_set_cursor refuse a cursor past it.';
