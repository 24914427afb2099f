-- Statement trigger on data_bars: the minutes a statement wrote or deleted become
-- dirty ranges for the timeframes rolled up from them, per symbol, coalesced so a
-- bulk backfill costs a handful of rows. Wakes runners through NOTIFY.
-- A span with no minute in a bucket of the symbol's calendar (after-hours and
-- overnight bars of a session calendar: calendar_bucketed_minutes) is never recorded:
-- it changes no bar, and each one cost a run that wrote nothing.
-- Only a span that reaches behind an idle task's cursor is recorded: one at or
-- ahead of it is data its catch-up reads anyway, and recording it made every
-- bar-fed 5m task due every live minute for a run that wrote nothing. For a task
-- that is not idle (running: its run may not see this write and move its cursor
-- past it) every span is recorded, and so is every span of a task whose row
-- rollup_dependents_lock could not lock: it locks the rows first, so what is read
-- of a task stays true until this write commits.
-- It also makes the tasks that have work now due (agg_finish leaves them asleep):
--   * a rollup built from 1m whose pending bucket the written minutes close
--     (their last end reaches pending_bucket_end): at once; minutes at or after
--     its cursor that do not close it: at the bucket's end plus the delay. A
--     write behind the cursor is a dirty range above, due through it.
--   * the symbol's live gap scan: run_interval after the write;
--   * the symbol's export task: export_interval after the write (export_wake).
-- A task running now is made due at once (its finish sees next_run_at moved into
-- the run): the run may not have seen the write. Rows are locked in a fixed
-- order (export rows, then the others by symbol), so concurrent writers and the
-- runs' own finishes never deadlock.
CREATE OR REPLACE FUNCTION tickagg.invalidate_from_data_bars()
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
    v_recorded bigint;
    v_woken bigint;
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
            max(r.ts_utc) + interval '1 minute' AS last_end,
            count(*) * interval '1 minute' AS covered
        FROM changed_rows AS r
        GROUP BY r.canonical_symbol, r.timeframe
    ) AS c;
    SELECT array_agg(l.canonical_symbol), array_agg(l.timeframe) INTO v_held_symbols, v_held_timeframes
    FROM tickagg.rollup_dependents_lock(v_symbols, v_timeframes) AS l;

    -- a new statement: it reads the tasks as they are now that they are locked
    WITH recorded AS MATERIALIZED (
        SELECT c.canonical_symbol, t.timeframe, d.span
        FROM unnest(v_symbols, v_timeframes, v_first_starts, v_last_ends, v_covered)
            AS c (canonical_symbol, timeframe, first_start, last_end, covered)
        INNER JOIN tickagg.timeframes AS t ON t.source_timeframe = c.timeframe
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = c.canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
        -- What a statement writes is mostly one stretch (a catch-up run, a backfill):
        -- its hull, holes included, is then recorded without sorting every row's range
        -- (range_agg cost 20 ms per 20,000 bars). Redoing a bucket in a hole changes
        -- nothing. Scattered writes keep their exact ranges.
        CROSS JOIN LATERAL unnest(
            CASE
                WHEN c.covered * 2 >= c.last_end - c.first_start
                    THEN tstzmultirange(tstzrange(c.first_start, c.last_end))
                ELSE (
                    SELECT range_agg(tstzrange(x.ts_utc, x.ts_utc + interval '1 minute'))
                    FROM changed_rows AS x
                    WHERE x.canonical_symbol = c.canonical_symbol AND x.timeframe = c.timeframe
                )
            END
        ) AS d (span)
        WHERE
            s.status <> 'idle' OR lower(d.span) < s.last_agg_bar_ts_utc
            OR (s.canonical_symbol, s.timeframe) NOT IN (
                SELECT h.canonical_symbol, h.timeframe
                FROM unnest(v_held_symbols, v_held_timeframes) AS h (canonical_symbol, timeframe)
            )
    ),
    -- The calendar is looked up once per calendar, over the hull of what its
    -- symbols record: a live write ahead of the cursors looks up nothing, and late
    -- minutes of many symbols or scattered ones not one each (a lookup per span
    -- made the trigger 5x slower for 48,000 scattered late minutes).
    symbol_calendars AS MATERIALIZED (
        SELECT k.canonical_symbol, r.calendar_code, k.first_start, k.last_end
        FROM (
            SELECT x.canonical_symbol, min(lower(x.span)) AS first_start, max(upper(x.span)) AS last_end
            FROM recorded AS x
            GROUP BY x.canonical_symbol
        ) AS k
        INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = k.canonical_symbol
    ),
    bucketed AS MATERIALIZED (
        SELECT y.canonical_symbol, w.minutes
        FROM symbol_calendars AS y
        INNER JOIN (
            SELECT
                z.calendar_code,
                tickagg.calendar_bucketed_minutes(z.calendar_code, min(z.first_start), max(z.last_end)) AS minutes
            FROM symbol_calendars AS z
            GROUP BY z.calendar_code
        ) AS w ON w.calendar_code = y.calendar_code
    )
    INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
    SELECT x.canonical_symbol, x.timeframe, x.span
    FROM recorded AS x
    INNER JOIN bucketed AS b ON b.canonical_symbol = x.canonical_symbol
    -- minutes outside every bucket (after-hours bars) change no bar
    WHERE x.span && b.minutes;
    GET DIAGNOSTICS v_recorded = ROW_COUNT;

    -- (from the per-symbol summary above: every row of data_bars is a 1m bar, and
    -- reading the written rows again for each step cost ~10 ms per 100k rows)
    PERFORM tickagg.export_wake(ARRAY(SELECT DISTINCT x FROM unnest(v_symbols) AS x));
    WITH written AS MATERIALIZED (
        SELECT c.canonical_symbol, c.last_end
        FROM unnest(v_symbols, v_timeframes, v_last_ends) AS c (canonical_symbol, timeframe, last_end)
        WHERE c.timeframe = '1m'
    ),
    to_wake AS (
        SELECT s.canonical_symbol, s.timeframe, s.task_kind, d.due_at
        FROM written AS w
        INNER JOIN tickagg.data_agg_state AS s ON s.canonical_symbol = w.canonical_symbol
        LEFT JOIN tickagg.timeframes AS t ON t.timeframe = s.timeframe
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN s.status = 'running' THEN clock_timestamp()
                WHEN s.task_kind = 'gap_scan' THEN clock_timestamp() + s.run_interval
                WHEN s.pending_bucket_end IS NULL OR w.last_end >= s.pending_bucket_end THEN clock_timestamp()
                ELSE s.pending_bucket_end + s.aggregation_delay
            END AS due_at
        ) AS d
        WHERE
            s.enabled
            AND (
                (s.task_kind = 'rollup' AND t.source_timeframe = '1m' AND w.last_end > s.last_agg_bar_ts_utc)
                OR (s.task_kind = 'gap_scan' AND s.status = 'idle')
            )
            AND (
                (s.status = 'idle' AND s.next_run_at > d.due_at)
                OR (s.status = 'running' AND s.next_run_at <= s.running_started_at_utc)
            )
        ORDER BY s.canonical_symbol, s.timeframe, s.task_kind
        FOR NO KEY UPDATE OF s
    )
    UPDATE tickagg.data_agg_state AS s SET next_run_at = w.due_at
    FROM to_wake AS w
    WHERE s.canonical_symbol = w.canonical_symbol AND s.timeframe = w.timeframe AND s.task_kind = w.task_kind;
    GET DIAGNOSTICS v_woken = ROW_COUNT;
    IF v_recorded > 0 OR v_woken > 0 THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.invalidate_from_data_bars() IS
'Trigger: record dirty 1-minute ranges per symbol for the dependent rollup tasks and notify runners.';
