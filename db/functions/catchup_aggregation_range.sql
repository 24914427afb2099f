-- One run of a rollup task: re-materialise the buckets that late writes dirtied
-- behind the cursor, then materialise up to p_max_windows closed buckets from
-- the cursor on, all in one set-based statement. The frontier is the source's
-- watermark (for 5m of a tick-fed symbol: its ticks_1m cursor), so weekends and
-- holes are skipped rather than waited on. Returns
-- the new cursor; agg_finish moves it in the same transaction.
CREATE OR REPLACE FUNCTION tickagg.catchup_aggregation_range(
    p_canonical_symbol text,
    p_timeframe text,
    p_cursor timestamptz,
    p_max_windows integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
-- A generic plan cached while derived_data_bars was empty kept scanning the whole
-- table for the next source bar once it had filled (80 ms a call instead of 0.05);
-- planning afresh each run costs well under a millisecond.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_calendar_code text;
    v_source_kind text;
    v_timeframe tickagg.timeframes%ROWTYPE;
    v_task tickagg.data_agg_state%ROWTYPE;
    v_max_windows integer;
    v_first_bucket timestamptz;
    v_cursor timestamptz;
    v_frontier timestamptz;
    v_next_source_ts timestamptz;
    v_start timestamptz;
    v_budget_end timestamptz;
    v_cursor_to timestamptz;
    v_invalidation_ids bigint[];
    v_dirty tstzmultirange;
    v_dirty_later tstzmultirange := '{}'::tstzmultirange;
    v_ranges tstzmultirange := '{}'::tstzmultirange;
    v_continue boolean := false;
    v_rollup jsonb := '{"buckets_with_data": 0, "bars_written": 0, "partial_bars": 0, "bars_deleted": 0}'::jsonb;
BEGIN
    v_task := tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    SELECT r.calendar_code, r.source_kind INTO v_calendar_code, v_source_kind
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;
    SELECT * INTO v_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    v_max_windows := coalesce(p_max_windows, v_task.max_windows, tickagg.setting('default_max_windows')::integer);
    IF v_max_windows < 1 THEN
        RAISE EXCEPTION 'p_max_windows must be at least 1, got %', v_max_windows
            USING ERRCODE = 'TK004';
    END IF;
    -- Nothing before the task's first bucket boundary is ever materialised.
    -- One bucket lookup finds it unless agg_start lies in closed market time.
    v_first_bucket := CASE
        WHEN lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_task.agg_start_utc)) = v_task.agg_start_utc
            THEN v_task.agg_start_utc
        ELSE tickagg.agg_bootstrap_cursor(p_canonical_symbol, p_timeframe, v_task.agg_start_utc)
    END;
    v_cursor := greatest(p_cursor, v_first_bucket);

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

    -- Invalidations read here cover data this transaction's later statements see;
    -- any committed after this read stay queued for the next run.
    SELECT array_agg(i.invalidation_id), range_agg(i.dirty_range)
    INTO v_invalidation_ids, v_dirty
    FROM tickagg.agg_invalidations AS i
    WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = p_timeframe;

    v_dirty := coalesce(v_dirty, '{}'::tstzmultirange) * tstzmultirange(tstzrange(v_first_bucket, v_cursor));
    IF NOT isempty(v_dirty) THEN
        v_budget_end := lower(v_dirty) + v_max_windows * v_timeframe.step;
        v_dirty_later := v_dirty * tstzmultirange(tstzrange(v_budget_end, NULL));
        v_dirty := v_dirty - v_dirty_later;
        v_continue := NOT isempty(v_dirty_later);
        SELECT range_agg(tstzrange(
            coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, lower(d.span))), lower(d.span)),
            coalesce(
                upper(tickagg.bucket_bounds(v_calendar_code, p_timeframe, upper(d.span) - interval '1 microsecond')),
                upper(d.span)
            )
        ))
        INTO v_ranges
        FROM unnest(v_dirty) AS d (span);
    END IF;

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
    ELSIF v_frontier IS NOT NULL THEN
        v_cursor_to := greatest(
            v_cursor,
            coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_frontier)), v_frontier)
        );
    END IF;

    IF NOT isempty(v_ranges) THEN
        v_rollup := tickagg.rollup_ranges(p_canonical_symbol, p_timeframe, v_ranges);
    END IF;

    DELETE FROM tickagg.agg_invalidations AS i WHERE i.invalidation_id = ANY(v_invalidation_ids);
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT p_canonical_symbol, p_timeframe, d.span FROM unnest(v_dirty_later) AS d (span);

    RETURN jsonb_build_object(
        'success', true,
        'windows_processed', (v_rollup ->> 'buckets_with_data')::bigint,
        'bars_written', (v_rollup ->> 'bars_written')::bigint,
        'partial_bars', (v_rollup ->> 'partial_bars')::bigint,
        'bars_deleted', (v_rollup ->> 'bars_deleted')::bigint,
        'dirty_ranges', coalesce(cardinality(v_invalidation_ids), 0),
        'cursor_from', p_cursor,
        'cursor_to', greatest(v_cursor_to, p_cursor),
        'frontier', v_frontier,
        'continue', v_continue
    );
END
$$;

COMMENT ON FUNCTION tickagg.catchup_aggregation_range(text, text, timestamptz, integer) IS
'Materialise dirty buckets behind the cursor and up to p_max_windows closed buckets after it; returns jsonb with cursor_to for agg_finish.';
