-- Materialise p_ranges of a rollup task's own timeframe and, when its run redoes
-- a few buckets behind its cursor (p_cascade: a late bar, a correction, a deletion),
-- the dirty buckets of every level built on it, in the same transaction and with
-- as few statements as the hierarchy allows. Each level's own run would cost a
-- claim, a catch-up call, a finish and a commit, about 2 ms a level: a late
-- bar's seven levels took 20 ms that way.
--
-- Only levels with a few buckets to redo (at most 16 buckets' span) are taken:
-- then the fixed cost of a statement dominates, so one statement (rollup_ranges)
-- rebuilds several levels from one source timeframe they all nest in, reading at
-- most 168 source bars per bucket (1h from 1m). A level beyond that starts the
-- next statement, which reads its own source timeframe, written by the statement
-- before: a late minute costs two statements, 5m to 1h from 1m, then 4h, 1d and
-- 1w from 1h. A backfill (more buckets) is left to each level's own run, in its
-- own transaction and statement timeout.
--
-- A level above is taken only while its task is idle and lockable (FOR UPDATE
-- SKIP LOCKED, so this never waits), and locked only once its source is taken: a
-- task another runner holds, or one that is disabled, failing or backing off, is
-- left to its own run with its invalidations, and so is every level built on it.
-- derived_rebuild_range takes a share lock on its task, so it and the cascade
-- never rewrite one level at once. A level taken also redoes its own queued dirty
-- spans behind its cursor (read from a current source, they come out right);
-- spans ahead of a cursor stay queued for its catch-up. If the levels above fail,
-- they are rolled back alone (their invalidations with them) and left to their
-- own runs, which report the error; the own level then runs alone.
--
-- Returns rollup_ranges' counts for the own level and, under "cascaded", those
-- of each level above, or {"error": message}.
CREATE OR REPLACE FUNCTION tickagg.rollup_cascade_dirty(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_max_windows integer,
    p_ranges tstzmultirange,
    p_cascade boolean
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_task tickagg.data_agg_state;
    v_frame tickagg.timeframes;
    v_tasks tickagg.data_agg_state[] := '{}';
    v_frames tickagg.timeframes[] := '{}';
    v_taken text[] := ARRAY[p_timeframe];
    v_cascaded text[] := ARRAY[p_timeframe];
    v_taken_timeframes text[];
    v_taken_spans tstzmultirange[];
    v_requeue_timeframes text[] := '{}';
    v_requeue_spans tstzmultirange[] := '{}';
    v_own tstzmultirange;
    v_dirty tstzmultirange;
    v_buckets tstzmultirange;
    v_requeue tstzmultirange;
    v_timeframes text[];
    v_ranges tstzmultirange[];
    v_steps interval[];
    v_sources text[];
    v_group_from integer := 1;
    v_group_step interval;
    v_rollup jsonb;
    v_by_timeframe jsonb := '{}'::jsonb;
BEGIN
    IF p_cascade THEN
        -- the own level leads the list of levels to redo
        SELECT ARRAY[t.timeframe], ARRAY[p_ranges], ARRAY[t.step], ARRAY[t.source_timeframe]
        INTO v_timeframes, v_ranges, v_steps, v_sources
        FROM tickagg.timeframes AS t
        WHERE t.timeframe = p_timeframe;
        BEGIN
            -- Lock a level only when its source is taken, so no row is held that the
            -- cascade does not use (a held row would make a finishing runner wait).
            FOR v_frame IN
                WITH RECURSIVE above AS (
                    SELECT t.timeframe, 1 AS depth
                    FROM tickagg.timeframes AS t
                    WHERE t.source_timeframe = p_timeframe
                    UNION ALL
                    SELECT t.timeframe, a.depth + 1
                    FROM tickagg.timeframes AS t
                    INNER JOIN above AS a ON t.source_timeframe = a.timeframe
                )
                SELECT t.*
                FROM above AS a
                INNER JOIN tickagg.timeframes AS t ON t.timeframe = a.timeframe
                ORDER BY a.depth
            LOOP
                CONTINUE WHEN NOT v_frame.source_timeframe = ANY(v_taken);
                SELECT * INTO v_task
                FROM tickagg.data_agg_state AS s
                WHERE
                    s.canonical_symbol = p_canonical_symbol
                    AND s.timeframe = v_frame.timeframe
                    AND s.task_kind = 'rollup'
                    AND s.enabled
                    AND s.status = 'idle'
                    AND s.transient_fail_streak = 0
                    AND s.hard_fail_streak = 0
                FOR UPDATE SKIP LOCKED;
                CONTINUE WHEN NOT FOUND;
                v_taken := v_taken || v_frame.timeframe;
                v_tasks := v_tasks || v_task;
                v_frames := v_frames || v_frame;
            END LOOP;

            -- Their dirty spans behind their cursors, in one statement; spans ahead
            -- of a cursor stay queued for that task's catch-up.
            WITH taken AS (
                DELETE FROM tickagg.agg_invalidations AS i
                USING unnest(v_tasks) AS l
                WHERE
                    i.canonical_symbol = p_canonical_symbol
                    AND i.timeframe = l.timeframe
                    AND lower(i.dirty_range) < l.last_agg_bar_ts_utc
                RETURNING i.timeframe, i.dirty_range
            )
            SELECT array_agg(t.timeframe), array_agg(t.spans)
            INTO v_taken_timeframes, v_taken_spans
            FROM (
                SELECT t.timeframe, range_agg(t.dirty_range) AS spans FROM taken AS t GROUP BY t.timeframe
            ) AS t;

            FOR v_i IN 1 .. cardinality(v_tasks) LOOP
                v_task := v_tasks[v_i];
                v_frame := v_frames[v_i];
                v_own := coalesce(
                    v_taken_spans[array_position(v_taken_timeframes, v_frame.timeframe)], '{}'::tstzmultirange
                );
                IF NOT v_frame.source_timeframe = ANY(v_cascaded) THEN
                    -- its source is left to its own run: so is this level
                    v_requeue_timeframes := v_requeue_timeframes || v_frame.timeframe;
                    v_requeue_spans := v_requeue_spans || v_own;
                    CONTINUE;
                END IF;
                -- its own spans and the buckets redone below it (what those change, the
                -- trigger records for this level: only its own spans are queued again)
                v_dirty := v_own + coalesce(
                    v_ranges[array_position(v_timeframes, v_frame.source_timeframe)], '{}'::tstzmultirange
                );
                SELECT b.dirty_buckets, b.requeue INTO v_buckets, v_requeue
                FROM tickagg.rollup_dirty_buckets(
                    p_canonical_symbol, v_frame.timeframe, p_calendar_code, v_frame.step, v_task.agg_start_utc,
                    v_task.last_agg_bar_ts_utc, p_max_windows, v_dirty
                ) AS b;
                IF NOT tickagg.few_buckets(v_buckets, v_frame.step) THEN
                    -- a backfill at this level: its own run does it, and the levels above
                    v_requeue := v_own;
                ELSE
                    v_requeue := v_requeue + v_own * tstzmultirange(tstzrange(v_task.last_agg_bar_ts_utc, NULL));
                    v_cascaded := v_cascaded || v_frame.timeframe;
                END IF;
                IF NOT isempty(v_requeue) THEN
                    v_requeue_timeframes := v_requeue_timeframes || v_frame.timeframe;
                    v_requeue_spans := v_requeue_spans || v_requeue;
                END IF;
                CONTINUE WHEN NOT v_frame.timeframe = ANY(v_cascaded) OR isempty(v_buckets);
                v_timeframes := v_timeframes || v_frame.timeframe;
                v_ranges := v_ranges || v_buckets;
                v_steps := v_steps || v_frame.step;
                v_sources := v_sources || v_frame.source_timeframe;
            END LOOP;
            INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
            SELECT p_canonical_symbol, r.timeframe, d.span
            FROM unnest(v_requeue_timeframes, v_requeue_spans) AS r (timeframe, spans)
            CROSS JOIN LATERAL unnest(r.spans) AS d (span);

            IF cardinality(v_timeframes) > 1 THEN
                -- A level joins the statement of the level before it when it nests in that
                -- statement's source (its own source is that source or one of the
                -- statement's levels) and needs at most 168 source bars per bucket.
                v_group_step := (SELECT t.step FROM tickagg.timeframes AS t WHERE t.timeframe = v_sources[1]);
                FOR v_i IN 2 .. cardinality(v_timeframes) + 1 LOOP
                    CONTINUE WHEN
                        v_i <= cardinality(v_timeframes)
                        AND (
                            v_sources[v_i] = v_sources[v_group_from]
                            OR v_sources[v_i] = ANY(v_timeframes[v_group_from:v_i - 1])
                        )
                        AND v_steps[v_i] <= v_group_step * 168;
                    SELECT v_by_timeframe || jsonb_object_agg(r.timeframe, to_jsonb(r) - 'canonical_symbol' - 'timeframe')
                    INTO v_by_timeframe
                    FROM tickagg.rollup_ranges(
                        array_fill(p_canonical_symbol, ARRAY[v_i - v_group_from]),
                        v_timeframes[v_group_from:v_i - 1], v_ranges[v_group_from:v_i - 1], v_sources[v_group_from]
                    ) AS r;
                    EXIT WHEN v_i > cardinality(v_timeframes);
                    v_group_from := v_i;
                    v_group_step := (SELECT t.step FROM tickagg.timeframes AS t WHERE t.timeframe = v_sources[v_i]);
                END LOOP;

                -- The statements' writes recorded invalidations for the levels they
                -- redid; the ones inside what was redone are done.
                DELETE FROM tickagg.agg_invalidations AS i
                USING unnest(v_timeframes[2:], v_ranges[2:]) AS l (timeframe, ranges)
                WHERE
                    i.canonical_symbol = p_canonical_symbol
                    AND i.timeframe = l.timeframe
                    AND i.created_by_xact = pg_current_xact_id()
                    AND i.dirty_range <@ l.ranges;

                UPDATE tickagg.data_agg_state AS s SET
                    bars_written_total = s.bars_written_total + (l.counts ->> 'bars_written')::bigint,
                    updated_at = now()
                FROM jsonb_each(v_by_timeframe - p_timeframe) AS l (timeframe, counts)
                WHERE
                    s.canonical_symbol = p_canonical_symbol
                    AND s.timeframe = l.timeframe
                    AND s.task_kind = 'rollup'
                    AND (l.counts ->> 'bars_written')::bigint > 0;

                RETURN (v_by_timeframe -> p_timeframe)
                    || jsonb_build_object('cascaded', v_by_timeframe - p_timeframe);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            v_by_timeframe := jsonb_build_object('error', SQLERRM);
        END;
    END IF;

    -- nothing above to redo (or it failed): the own level alone
    SELECT to_jsonb(r) - 'canonical_symbol' - 'timeframe' INTO v_rollup
    FROM tickagg.rollup_ranges(ARRAY[p_canonical_symbol], ARRAY[p_timeframe], ARRAY[p_ranges]) AS r;
    RETURN v_rollup || jsonb_build_object('cascaded', v_by_timeframe);
END
$$;

COMMENT ON FUNCTION tickagg.rollup_cascade_dirty(text, text, text, integer, tstzmultirange, boolean) IS
'Materialise a rollup task''s ranges and, after late writes, the dirty buckets of the levels above it, in few statements.';
