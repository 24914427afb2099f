-- Statement trigger on derived_data_bars: what a statement wrote, rewrote or
-- deleted is owed to the work built on it, both recorded here in one statement
-- (as two trigger functions they cost a late bar's cascade eight calls, not four):
--   * the timeframe built from it: the same span is dirty there
--     (agg_invalidations), which is how a correction cascades up to 1w; only a
--     span that reaches behind that task's cursor, or every span when the task
--     is not idle or its row could not be locked (rollup_dependents_lock, as in
--     invalidate_from_data_bars: a level's live bars are ahead of the level
--     above, and recorded they made it due for a run that wrote nothing);
--   * the series' indicators: every later value depends on the bar (an EMA on
--     all history), so a rewind to the first changed bar is queued and the task
--     made due. A rewind is queued even for a write at or after the task's
--     cursor: a run claimed before this write commits may read the old bars and
--     move the cursor past them (the write's transaction sees the old cursor),
--     and only a queued rewind brings it back. A rewind at or after the cursor
--     costs the next run nothing (it starts at the earlier of the two).
--   * the symbol's export task (export_wake).
-- Indicator values live in derived_bar_indicators, so writing them never fires this.
CREATE OR REPLACE FUNCTION tickagg.derived_bars_changed()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- small statements with large estimates: JIT would cost more than it saves
SET jit = off
AS $$
DECLARE
    v_symbols text[];
    v_timeframes text[];
    v_first_starts timestamptz[];
    v_last_ends timestamptz[];
    v_covered interval[];
    v_held_symbols text[];
    v_held_timeframes text[];
    v_notify boolean;
BEGIN
    -- INSERT ... ON CONFLICT DO UPDATE fires both the insert and the update
    -- trigger, one of them with no rows: that one has nothing to record.
    IF NOT EXISTS (SELECT 1 FROM changed_rows) THEN
        RETURN NULL;
    END IF;
    SELECT
        array_agg(c.canonical_symbol), array_agg(c.timeframe), array_agg(c.first_start), array_agg(c.last_end),
        array_agg(c.covered)
    INTO v_symbols, v_timeframes, v_first_starts, v_last_ends, v_covered
    FROM (
        SELECT
            r.canonical_symbol,
            r.timeframe,
            min(r.ts_utc) AS first_start,
            max(r.bucket_end) AS last_end,
            sum(r.bucket_end - r.ts_utc) AS covered
        FROM changed_rows AS r
        GROUP BY r.canonical_symbol, r.timeframe
    ) AS c;
    SELECT array_agg(l.canonical_symbol), array_agg(l.timeframe) INTO v_held_symbols, v_held_timeframes
    FROM tickagg.rollup_dependents_lock(v_symbols, v_timeframes) AS l;

    -- a new statement: it reads the tasks above as they are now that they are locked
    WITH changed AS MATERIALIZED (
        SELECT *
        FROM unnest(v_symbols, v_timeframes, v_first_starts, v_last_ends, v_covered)
            AS c (canonical_symbol, timeframe, first_start, last_end, covered)
    ),
    invalidated AS (
        INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
        SELECT c.canonical_symbol, t.timeframe, d.span
        FROM changed AS c
        INNER JOIN tickagg.timeframes AS t ON t.source_timeframe = c.timeframe
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
        -- What a statement writes is mostly one stretch (a catch-up run, a
        -- backfill): its hull, holes included, is then recorded without sorting
        -- every row's range (range_agg cost 20 ms per 20,000 bars). Redoing a
        -- bucket in a hole changes nothing. Scattered writes keep their exact ranges.
        CROSS JOIN LATERAL unnest(
            CASE
                WHEN c.covered * 2 >= c.last_end - c.first_start
                    THEN tstzmultirange(tstzrange(c.first_start, c.last_end))
                ELSE (
                    SELECT range_agg(tstzrange(x.ts_utc, x.bucket_end))
                    FROM changed_rows AS x
                    WHERE x.canonical_symbol = c.canonical_symbol AND x.timeframe = c.timeframe
                )
            END
        ) AS d (span)
        WHERE
            s.status <> 'idle' OR lower(d.span) < s.last_agg_bar_ts_utc
            OR (s.canonical_symbol, s.timeframe) NOT IN (
                SELECT h.canonical_symbol, h.timeframe FROM unnest(v_held_symbols, v_held_timeframes) AS h (canonical_symbol, timeframe)
            )
        RETURNING 1
    ),
    -- At most one pending rewind per series, the earliest (a disabled task's
    -- queue grew by a row per correction, forever): a write that a pending rewind
    -- at or before it covers queues nothing, and one before every pending rewind
    -- replaces them. Rewinds an indicators run has taken (locked by its DELETE)
    -- are left to it, never waited for: a correction must not wait for a run.
    -- The covering rewind is held (FOR KEY SHARE) until this write commits, so
    -- no run can take it and then read the bars as they were before this write.
    rewinds AS (
        INSERT INTO tickagg.indicator_rewinds (canonical_symbol, timeframe, from_ts)
        SELECT c.canonical_symbol, c.timeframe, c.first_start
        FROM changed AS c
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = c.timeframe AND s.task_kind = 'indicators'
        WHERE NOT EXISTS (
            SELECT FROM tickagg.indicator_rewinds AS w
            WHERE
                w.canonical_symbol = c.canonical_symbol AND w.timeframe = c.timeframe
                AND w.from_ts <= c.first_start
            FOR KEY SHARE SKIP LOCKED
        )
        RETURNING canonical_symbol, timeframe, from_ts
    ),
    superseded AS (
        DELETE FROM tickagg.indicator_rewinds AS w
        WHERE w.rewind_id IN (
            SELECT x.rewind_id
            FROM tickagg.indicator_rewinds AS x
            INNER JOIN rewinds AS r
                ON x.canonical_symbol = r.canonical_symbol AND x.timeframe = r.timeframe AND x.from_ts > r.from_ts
            FOR UPDATE OF x SKIP LOCKED
        )
        RETURNING 1
    ),
    -- Every enabled indicators task of a changed series is made due, and its row
    -- stays locked until this write commits: claims skip locked rows, so no run
    -- can be claimed between here and the commit, read the bars as they were,
    -- move the cursor past them and leave this write's rewind queued with the
    -- task no longer due (stale until the next bar; the chaos suite saw it). A
    -- task claimed before this write (running) sees next_run_at past its claim
    -- in agg_finish and runs again.
    woken AS (
        UPDATE tickagg.data_agg_state AS s SET
            next_run_at = CASE
                WHEN s.status = 'running' THEN clock_timestamp()
                ELSE least(s.next_run_at, clock_timestamp())
            END
        FROM changed AS c
        WHERE
            s.canonical_symbol = c.canonical_symbol AND s.timeframe = c.timeframe AND s.task_kind = 'indicators'
            -- a disabled task has its rewind queued for when it is enabled again
            AND s.enabled
        RETURNING 1
    )
    -- (each runs to completion whatever is read of it)
    SELECT EXISTS (SELECT FROM invalidated) OR EXISTS (SELECT FROM rewinds) OR EXISTS (SELECT FROM woken)
    INTO v_notify;
    -- after the indicators rows: every writer locks task rows in the same order
    PERFORM tickagg.export_wake(array_agg(DISTINCT c.canonical_symbol)) FROM changed_rows AS c;
    IF v_notify THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.derived_bars_changed() IS
'Trigger: record the dirty spans of changed derived bars for the next timeframe up, rewind their indicators, notify runners.';
