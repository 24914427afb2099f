-- Recompute, on demand, the bars of one derived timeframe whose buckets overlap
-- [p_from, p_to): the range is widened to whole buckets and limited to what the
-- task has materialised (its first bucket up to its cursor); buckets after the
-- cursor are left to catch-up. One set-based rollup_ranges call from the source
-- timeframe: changed bars are rewritten (revision bumped), identical ones are
-- no-ops, bars whose source vanished are soft-deleted, and the invalidation
-- triggers carry every change up the hierarchy. A full rebuild is a wide range
-- ('-infinity', 'infinity'). Who writes a series' bars at a time:
--   * the task's own run: rollup_series_lock, taken by both before anything
--     else, so a run writing now finishes first and a run that starts meanwhile
--     waits for this transaction; each reads the other's committed bars and cursor;
--   * a batch of runs (agg_run_rollup_batch) and a late-data cascade from the
--     level below (rollup_cascade_dirty) lock the task row: the key-share lock
--     taken here waits for one that holds it, and one that comes later waits (the
--     batch) or leaves this level to its own run (the cascade). Claims skip the
--     task meanwhile.
-- The task is read after those locks, so the range follows the cursor as the
-- run before committed it.
CREATE OR REPLACE FUNCTION tickagg.derived_rebuild_range(
    p_canonical_symbol text,
    p_timeframe text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
AS $$
DECLARE
    v_calendar_code text;
    v_timeframe tickagg.timeframes%ROWTYPE;
    v_task tickagg.data_agg_state%ROWTYPE;
    v_first_bucket timestamptz;
    v_from timestamptz;
    v_to timestamptz;
    v_rollup jsonb := '{"buckets_with_data": 0, "bars_written": 0, "bars_deleted": 0}'::jsonb;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from >= p_to THEN
        RAISE EXCEPTION 'invalid rebuild range [%, %)', p_from, p_to
            USING ERRCODE = 'TK004',
                  HINT = 'p_from must be before p_to; for a full rebuild pass ''-infinity'' and ''infinity''.';
    END IF;

    PERFORM tickagg.rollup_series_lock(p_canonical_symbol, p_timeframe);
    PERFORM 1
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = 'rollup'
    FOR KEY SHARE;
    -- read after the locks: the next statements see what a run or cascade committed
    v_task := tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    SELECT r.calendar_code INTO v_calendar_code
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;
    SELECT * INTO v_timeframe FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;

    -- What the task has materialised: its first bucket boundary up to its cursor
    -- (both bucket boundaries or closed market time).
    v_first_bucket := tickagg.rollup_first_bucket(
        p_canonical_symbol, p_timeframe, v_calendar_code, v_task.agg_start_utc
    );
    v_from := greatest(p_from, v_first_bucket);
    v_to := least(p_to, v_task.last_agg_bar_ts_utc);

    IF v_from < v_to THEN
        -- Widen to whole buckets; an end in closed market time is a boundary already.
        v_from := coalesce(lower(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_from)), v_from);
        v_to := coalesce(
            upper(tickagg.bucket_bounds(v_calendar_code, p_timeframe, v_to - interval '1 microsecond')), v_to
        );
        v_from := greatest(v_from, v_first_bucket);
        v_to := least(v_to, v_task.last_agg_bar_ts_utc);
    END IF;

    IF v_from >= v_to THEN
        RETURN jsonb_build_object(
            'buckets_rebuilt', 0, 'bars_written', 0, 'bars_deleted', 0,
            'from', NULL, 'to', NULL, 'cursor', v_task.last_agg_bar_ts_utc
        );
    END IF;

    SELECT to_jsonb(r) INTO v_rollup
    FROM tickagg.rollup_ranges(
        ARRAY[p_canonical_symbol], ARRAY[p_timeframe], ARRAY[tstzmultirange(tstzrange(v_from, v_to))]
    ) AS r;

    RETURN jsonb_build_object(
        'buckets_rebuilt', (v_rollup ->> 'buckets_with_data')::bigint,
        'bars_written', (v_rollup ->> 'bars_written')::bigint,
        'bars_deleted', (v_rollup ->> 'bars_deleted')::bigint,
        'from', v_from,
        'to', v_to,
        'cursor', v_task.last_agg_bar_ts_utc
    );
END
$$;

COMMENT ON FUNCTION tickagg.derived_rebuild_range(text, text, timestamptz, timestamptz) IS
'Recompute the materialised bars of one symbol and timeframe whose buckets overlap [p_from, p_to), behind the task''s cursor; changes cascade up through the invalidation triggers. Returns jsonb buckets_rebuilt, bars_written, bars_deleted, from, to.';
