-- Materialise p_ranges of a rollup task's own timeframe and, when its run redoes
-- buckets behind its cursor (p_cascade: a late bar, a correction, a deletion),
-- the dirty buckets of every level built on it, in the same transaction and with
-- as few statements as the hierarchy allows. Each level's own run would cost a
-- claim, a catch-up call, a finish and a commit, about 2 ms a level: a late
-- bar's seven levels took 20 ms that way.
--
-- Where a level has a few buckets to redo (at most 16), the fixed cost of a
-- statement dominates, so one statement (rollup_ranges) rebuilds several such
-- levels from one source timeframe they all nest in, reading at most 168 source
-- bars per bucket (1h from 1m). A level beyond that starts the next statement,
-- which reads its own source timeframe, written by the statement before: a late
-- minute costs two statements, 5m to 1h from 1m, then 4h, 1d and 1w from 1h.
-- A level with many buckets to redo (a backfill) gets a statement of its own
-- reading its own source: re-reading the minutes of a month once per level cost
-- more than the statements saved.
--
-- A level above is taken only while its task is idle and lockable (FOR UPDATE
-- SKIP LOCKED, so this never waits): a task another runner holds, or one that is
-- disabled, failing or backing off, is left to its own run with its
-- invalidations, and so is every level built on it. A level taken also redoes
-- its own queued dirty spans behind its cursor (read from a current source, they
-- come out right); spans ahead of a cursor stay queued for its catch-up. If the
-- levels above fail, they are rolled back alone (their invalidations with them)
-- and left to their own runs, which report the error; the own level then runs
-- alone.
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
    v_level record;
    v_taken text[] := ARRAY[p_timeframe];
    v_timeframes text[];
    v_ranges tstzmultirange[];
    v_steps interval[];
    v_sources text[];
    v_few boolean[];
    v_dirty tstzmultirange;
    v_group_from integer := 1;
    v_group_step interval;
    v_rollup jsonb;
    v_by_timeframe jsonb := '{}'::jsonb;
BEGIN
    SELECT
        ARRAY[t.timeframe],
        ARRAY[p_ranges],
        ARRAY[t.step],
        ARRAY[t.source_timeframe],
        ARRAY[tickagg.range_width(p_ranges) <= t.step * 16]
    INTO v_timeframes, v_ranges, v_steps, v_sources, v_few
    FROM tickagg.timeframes AS t
    WHERE t.timeframe = p_timeframe;

    IF p_cascade THEN
        BEGIN
            FOR v_level IN
                WITH RECURSIVE above AS (
                    SELECT t.timeframe, t.source_timeframe, t.step, 1 AS depth
                    FROM tickagg.timeframes AS t
                    WHERE t.source_timeframe = p_timeframe
                    UNION ALL
                    SELECT t.timeframe, t.source_timeframe, t.step, a.depth + 1
                    FROM tickagg.timeframes AS t
                    INNER JOIN above AS a ON t.source_timeframe = a.timeframe
                )
                SELECT a.timeframe, a.source_timeframe, a.step, s.agg_start_utc, s.last_agg_bar_ts_utc, s.max_windows
                FROM above AS a
                INNER JOIN tickagg.data_agg_state AS s
                    ON s.canonical_symbol = p_canonical_symbol AND s.timeframe = a.timeframe AND s.task_kind = 'rollup'
                WHERE
                    s.enabled
                    AND s.status = 'idle'
                    AND s.transient_fail_streak = 0
                    AND s.hard_fail_streak = 0
                ORDER BY a.depth
                FOR UPDATE OF s SKIP LOCKED
            LOOP
                -- only on top of a level this cascade holds (or the run's own timeframe)
                CONTINUE WHEN NOT v_level.source_timeframe = ANY(v_taken);
                SELECT d.dirty_buckets INTO v_dirty
                FROM tickagg.rollup_take_dirty(
                    p_canonical_symbol, v_level.timeframe, p_calendar_code, v_level.step, v_level.agg_start_utc,
                    v_level.last_agg_bar_ts_utc, coalesce(v_level.max_windows, p_max_windows),
                    p_keep_ahead => true,
                    p_also => coalesce(
                        v_ranges[array_position(v_timeframes, v_level.source_timeframe)], '{}'::tstzmultirange
                    )
                ) AS d;
                v_taken := v_taken || v_level.timeframe;
                CONTINUE WHEN isempty(v_dirty);
                v_timeframes := v_timeframes || v_level.timeframe;
                v_ranges := v_ranges || v_dirty;
                v_steps := v_steps || v_level.step;
                v_sources := v_sources || v_level.source_timeframe;
                v_few := v_few || (tickagg.range_width(v_dirty) <= v_level.step * 16);
            END LOOP;
            IF cardinality(v_timeframes) > 1 THEN
                SELECT t.step INTO v_group_step FROM tickagg.timeframes AS t WHERE t.timeframe = v_sources[1];
                FOR v_i IN 2 .. cardinality(v_timeframes) + 1 LOOP
                    CONTINUE WHEN
                        v_i <= cardinality(v_timeframes)
                        AND v_few[v_group_from]
                        AND v_few[v_i]
                        AND v_steps[v_i] <= v_group_step * 168;
                    v_rollup := tickagg.rollup_ranges(
                        p_canonical_symbol, v_timeframes[v_group_from:v_i - 1], v_ranges[v_group_from:v_i - 1],
                        v_sources[v_group_from]
                    );
                    v_by_timeframe := v_by_timeframe || (v_rollup -> 'by_timeframe');
                    EXIT WHEN v_i > cardinality(v_timeframes);
                    v_group_from := v_i;
                    SELECT t.step INTO v_group_step FROM tickagg.timeframes AS t WHERE t.timeframe = v_sources[v_i];
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
    v_rollup := tickagg.rollup_ranges(p_canonical_symbol, ARRAY[p_timeframe], ARRAY[p_ranges]);
    RETURN (v_rollup -> 'by_timeframe' -> p_timeframe) || jsonb_build_object('cascaded', v_by_timeframe);
END
$$;

COMMENT ON FUNCTION tickagg.rollup_cascade_dirty(text, text, text, integer, tstzmultirange, boolean) IS
'Materialise a rollup task''s ranges and, after late writes, the dirty buckets of the levels above it, in few statements.';
