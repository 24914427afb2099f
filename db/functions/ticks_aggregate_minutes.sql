-- One run of a ticks_1m task: turn ticks into 1-minute bars in data_bars.
--   forward  every closed minute from the cursor on (up to p_max_windows
--            minutes), source live_aggregated. The frontier (first open minute)
--            is the later of now() - the task's aggregation_delay and the minute
--            of the symbol's newest tick: a tick of a later minute closes the
--            earlier ones at once. Quiet stretches are skipped, not waited on.
--   late     minutes behind the cursor that late ticks dirtied (agg_invalidations
--            rows of timeframe '1m', recorded by ticks_record_late), re-aggregated
--            from all their ticks and written as live_gap_filled, unless the bar
--            there is already identical.
-- The bars: ticks_write_minutes. Late minutes beyond p_max_windows minutes after
-- the first stay queued for the next run. Returns jsonb like
-- catchup_aggregation_range; agg_finish moves the cursor.
CREATE OR REPLACE FUNCTION tickagg.ticks_aggregate_minutes(
    p_canonical_symbol text,
    p_cursor timestamptz,
    p_max_windows integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
SET work_mem = '64MB'
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
    v_mid boolean;
    v_max_windows integer;
    v_cursor timestamptz;
    v_newest timestamptz;
    v_first timestamptz;
    v_frontier timestamptz;
    v_start timestamptz;
    v_cursor_to timestamptz;
    v_invalidation_ids bigint[];
    v_dirty tstzmultirange;
    v_dirty_later tstzmultirange := '{}'::tstzmultirange;
    v_ranges tstzmultirange := '{}'::tstzmultirange;
    v_continue boolean := false;
    v_minutes bigint := 0;
    v_written bigint := 0;
BEGIN
    -- Locked before any tick is read: a producer whose ticks this run might miss
    -- either commits first (we wait here) or waits in ticks_record_late until we
    -- commit and then records them as late against the new cursor.
    SELECT * INTO v_task
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'ticks_1m'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no ticks_1m task for %', p_canonical_symbol
            USING ERRCODE = 'TK006', HINT = 'Register the symbol with --source ticks, then run tickagg sync.';
    END IF;
    SELECT r.price_kind = 'mid' INTO v_mid
    FROM tickagg.core_asset_registry_all AS r
    WHERE r.canonical_symbol = p_canonical_symbol;
    v_max_windows := coalesce(p_max_windows, v_task.max_windows, tickagg.setting('default_max_windows')::integer);
    IF v_max_windows < 1 THEN
        RAISE EXCEPTION 'p_max_windows must be at least 1, got %', v_max_windows USING ERRCODE = 'TK004';
    END IF;
    v_cursor := greatest(p_cursor, date_trunc('minute', v_task.agg_start_utc));

    SELECT min(t.ts_utc), max(t.ts_utc) INTO v_first, v_newest
    FROM tickagg.ticks AS t
    WHERE t.canonical_symbol = p_canonical_symbol AND t.ts_utc >= v_cursor;
    v_frontier := greatest(
        date_trunc('minute', now() - v_task.aggregation_delay),
        date_trunc('minute', v_newest),
        v_cursor
    );
    v_cursor_to := v_frontier;
    IF v_first IS NOT NULL AND v_first < v_frontier THEN
        v_start := date_trunc('minute', v_first);
        IF v_start + v_max_windows * interval '1 minute' < v_frontier THEN
            v_cursor_to := v_start + v_max_windows * interval '1 minute';
            v_continue := true;
        END IF;
        v_ranges := tstzmultirange(tstzrange(v_start, v_cursor_to));
    END IF;

    -- Late minutes read here cover ticks this transaction sees; later ones stay queued.
    SELECT array_agg(i.invalidation_id), range_agg(i.dirty_range)
    INTO v_invalidation_ids, v_dirty
    FROM tickagg.agg_invalidations AS i
    WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = '1m';
    v_dirty := coalesce(v_dirty, '{}'::tstzmultirange)
        * tstzmultirange(tstzrange(date_trunc('minute', v_task.agg_start_utc), v_cursor));
    IF NOT isempty(v_dirty) THEN
        v_dirty_later := v_dirty
            * tstzmultirange(tstzrange(lower(v_dirty) + v_max_windows * interval '1 minute', NULL));
        v_dirty := v_dirty - v_dirty_later;
        v_continue := v_continue OR NOT isempty(v_dirty_later);
    END IF;
    v_ranges := v_ranges + v_dirty;

    IF NOT isempty(v_ranges) THEN
        SELECT coalesce(sum(w.minutes), 0), coalesce(sum(w.written), 0) INTO v_minutes, v_written
        FROM (
            SELECT
                array_agg(p_canonical_symbol) AS symbols, array_agg(v_mid) AS mids,
                array_agg(lower(r.span)) AS lowers, array_agg(upper(r.span)) AS uppers,
                array_agg(v_cursor) AS live_from
            FROM unnest(v_ranges) AS r (span)
        ) AS a
        CROSS JOIN LATERAL tickagg.ticks_write_minutes(a.symbols, a.mids, a.lowers, a.uppers, a.live_from) AS w;
    END IF;

    DELETE FROM tickagg.agg_invalidations AS i WHERE i.invalidation_id = ANY(v_invalidation_ids);
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT p_canonical_symbol, '1m', d.span FROM unnest(v_dirty_later) AS d (span);

    RETURN jsonb_build_object(
        'success', true,
        'windows_processed', v_minutes,
        'bars_written', v_written,
        'dirty_ranges', coalesce(cardinality(v_invalidation_ids), 0),
        'cursor_from', p_cursor,
        'cursor_to', greatest(v_cursor_to, p_cursor),
        'frontier', v_frontier,
        'continue', v_continue
    );
END
$$;

COMMENT ON FUNCTION tickagg.ticks_aggregate_minutes(text, timestamptz, integer) IS
'Aggregate a tick-fed symbol''s closed minutes (and minutes dirtied by late ticks) into 1-minute bars; returns jsonb with cursor_to for agg_finish.';
