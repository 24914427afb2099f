-- One run of a rollup task: re-materialise the buckets that late writes dirtied
-- behind the cursor, then materialise up to p_max_windows closed buckets from
-- the cursor on, all in one set-based statement. The frontier is the source's
-- watermark (for 5m of a tick-fed symbol: its ticks_1m cursor), so weekends and
-- holes are skipped rather than waited on. When this run rewrote bars behind the
-- cursors of the timeframes above, their dirty buckets are redone in this call
-- too (rollup_cascade_dirty), so a late bar costs one run, not one per level.
-- Returns the new cursor; agg_finish moves it in the same transaction.
-- A run that writes waits first for a rebuild of the same series (and a rebuild
-- for it): rollup_series_lock.
-- With p_write false it only plans: it takes the dirty spans and returns the
-- ranges to materialise ("ranges", "redoes_dirty") instead of writing them, for
-- agg_run_rollup_batch, which writes many symbols' buckets in one statement in
-- the same transaction; the batch has locked its task rows before (agg_batch_held),
-- and a rebuild's lock on the row serialises the two.
CREATE OR REPLACE FUNCTION tickagg.catchup_aggregation_range(
    p_canonical_symbol text,
    p_timeframe text,
    p_cursor timestamptz,
    p_max_windows integer DEFAULT NULL,
    p_write boolean DEFAULT true
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
-- Its statements are index lookups with one right plan each, cached rather than
-- planned per call (planning them was a third of a late bar's run). A generic
-- plan cached while derived_data_bars was empty once scanned the whole table for
-- the next source bar (80 ms a call instead of 0.05): no sequential scans here.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_calendar_code text;
    v_source_kind text;
    v_timeframe tickagg.timeframes%ROWTYPE;
    v_task tickagg.data_agg_state%ROWTYPE;
    v_max_windows integer;
    v_cursor timestamptz;
    v_frontier timestamptz;
    v_next_source_ts timestamptz;
    v_start timestamptz;
    v_budget_end timestamptz;
    v_cursor_to timestamptz;
    v_spans_taken integer;
    v_ranges tstzmultirange;
    v_continue boolean;
    v_rollup jsonb := '{"buckets_with_data": 0, "bars_written": 0, "partial_bars": 0, "bars_deleted": 0}'::jsonb;
    v_redoes_dirty boolean;
BEGIN
    IF p_write THEN
        -- a rebuild of this series writing now finishes first; this run then reads its bars
        PERFORM tickagg.rollup_series_lock(p_canonical_symbol, p_timeframe);
    END IF;
    v_task := tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    SELECT r.calendar_code, r.source_kind INTO v_calendar_code, v_source_kind
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;
    SELECT * INTO v_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    v_max_windows := coalesce(p_max_windows, v_task.max_windows, tickagg.setting('rollup_max_windows')::integer);
    IF v_max_windows < 1 THEN
        RAISE EXCEPTION 'p_max_windows must be at least 1, got %', v_max_windows
            USING ERRCODE = 'TK004';
    END IF;
    -- Nothing before the task's first bucket boundary is ever materialised. It lies
    -- within 15 days after agg_start (agg_bootstrap_cursor): a later cursor is past it.
    v_cursor := p_cursor;
    IF p_cursor < v_task.agg_start_utc + interval '15 days' THEN
        v_cursor := greatest(
            p_cursor,
            tickagg.rollup_first_bucket(p_canonical_symbol, p_timeframe, v_calendar_code, v_task.agg_start_utc)
        );
    END IF;

    IF v_timeframe.source_timeframe = '1m' AND v_source_kind = 'ticks' THEN
        -- a tick-fed symbol's minutes are final once its ticks_1m task has passed them
        SELECT s.last_agg_bar_ts_utc INTO v_frontier
        FROM tickagg.data_agg_state AS s
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m';
    ELSIF v_timeframe.source_timeframe = '1m' THEN
        SELECT max(b.ts_utc) + interval '1 minute' INTO v_frontier
        FROM tickagg.data_bars AS b
        WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m';
        -- A bucket whose last minutes never arrive still closes once the delay has passed.
        v_frontier := greatest(v_frontier, now() - v_task.aggregation_delay);
    ELSE
        SELECT s.last_agg_bar_ts_utc INTO v_frontier
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = p_canonical_symbol
            AND s.timeframe = v_timeframe.source_timeframe
            AND s.task_kind = 'rollup';
    END IF;

    SELECT d.dirty_buckets, d.more_dirty, d.spans_taken
    INTO v_ranges, v_continue, v_spans_taken
    FROM tickagg.rollup_take_dirty(
        p_canonical_symbol, p_timeframe, v_calendar_code, v_timeframe.step, v_task.agg_start_utc, v_cursor,
        v_max_windows
    ) AS d;
    -- A few buckets behind the cursor are late data: the levels built on this one
    -- have them too, and redo them in this call. A backfill (a longer span) is
    -- left to each level's own run, in its own transaction and statement timeout.
    v_redoes_dirty := NOT isempty(v_ranges) AND tickagg.few_buckets(v_ranges, v_timeframe.step);

    -- the table that holds the source, named directly so its index is the plan
    IF v_timeframe.source_timeframe = '1m' THEN
        SELECT min(b.ts_utc) INTO v_next_source_ts
        FROM tickagg.data_bars AS b
        WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = '1m' AND b.ts_utc >= v_cursor;
    ELSE
        SELECT min(d.ts_utc) INTO v_next_source_ts
        FROM tickagg.derived_data_bars AS d
        WHERE
            d.canonical_symbol = p_canonical_symbol
            AND d.timeframe = v_timeframe.source_timeframe
            AND d.ts_utc >= v_cursor
            AND d.deleted_at IS NULL;
    END IF;

    v_cursor_to := v_cursor;
    IF v_next_source_ts IS NOT NULL AND v_frontier IS NOT NULL THEN
        v_start := greatest(
            v_cursor,
            coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_next_source_ts)), v_next_source_ts)
        );
        v_budget_end := v_start + v_max_windows * v_timeframe.step;
        v_cursor_to := least(v_budget_end, v_frontier);
        -- Only closed buckets: stop at the last bucket boundary at or before the limit.
        v_cursor_to := coalesce(
            lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_cursor_to)), v_cursor_to
        );
        IF v_cursor_to > v_start THEN
            v_ranges := v_ranges + tstzmultirange(tstzrange(v_start, v_cursor_to));
            v_continue := v_continue OR v_budget_end < v_frontier;
        ELSE
            -- Everything before the first source bar's bucket is closed and empty.
            v_cursor_to := v_start;
        END IF;
    ELSIF v_frontier > v_cursor THEN
        -- (a frontier at or behind the cursor leaves it where it is: no lookup)
        v_cursor_to := greatest(
            v_cursor,
            coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_frontier)), v_frontier)
        );
    END IF;

    IF NOT p_write THEN
        RETURN jsonb_build_object(
            'success', true,
            'ranges', v_ranges,
            'redoes_dirty', v_redoes_dirty,
            'calendar_code', v_calendar_code,
            'max_windows', v_max_windows,
            'dirty_ranges', v_spans_taken,
            'cursor_from', p_cursor,
            'cursor_to', greatest(v_cursor_to, p_cursor),
            'frontier', v_frontier,
            'continue', v_continue
        );
    END IF;
    IF NOT isempty(v_ranges) THEN
        v_rollup := tickagg.rollup_cascade_dirty(
            p_canonical_symbol, p_timeframe, v_calendar_code, v_max_windows, v_ranges, p_cascade => v_redoes_dirty
        );
    END IF;

    RETURN jsonb_build_object(
        'success', true,
        'windows_processed', (v_rollup ->> 'buckets_with_data')::bigint,
        'bars_written', (v_rollup ->> 'bars_written')::bigint,
        'partial_bars', (v_rollup ->> 'partial_bars')::bigint,
        'bars_deleted', (v_rollup ->> 'bars_deleted')::bigint,
        'dirty_ranges', v_spans_taken,
        'cursor_from', p_cursor,
        'cursor_to', greatest(v_cursor_to, p_cursor),
        'frontier', v_frontier,
        'continue', v_continue,
        'cascaded', coalesce(v_rollup -> 'cascaded', '{}'::jsonb)
    );
END
$$;

COMMENT ON FUNCTION tickagg.catchup_aggregation_range(text, text, timestamptz, integer, boolean) IS
'Materialise (or with p_write false only plan) dirty buckets behind the cursor and up to p_max_windows closed buckets after it; returns jsonb with cursor_to for agg_finish.';
