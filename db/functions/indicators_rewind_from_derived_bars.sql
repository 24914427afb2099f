-- Statement trigger on derived_data_bars: bars written, rewritten or deleted
-- change every later indicator value of their series (an EMA depends on all
-- history), so queue a rewind to the first such bar for the indicators task and
-- make it due. A rewind is queued even for a write at or after the task's
-- cursor: a run claimed before this write commits may read the old bars and
-- move the cursor past them (the write's transaction sees the old cursor), and
-- only a queued rewind brings it back. A rewind at or after the cursor costs
-- the next run nothing (it starts at the earlier of the two). Indicator values
-- live in derived_bar_indicators, so writing them never fires this.
CREATE OR REPLACE FUNCTION tickagg.indicators_rewind_from_derived_bars()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_woken bigint;
BEGIN
    -- INSERT ... ON CONFLICT DO UPDATE fires both the insert and the update
    -- trigger, one of them with no rows: that one has nothing to record.
    IF NOT EXISTS (SELECT 1 FROM changed_rows) THEN
        RETURN NULL;
    END IF;
    WITH firsts AS (
        SELECT r.canonical_symbol, r.timeframe, min(r.ts_utc) AS from_ts
        FROM changed_rows AS r
        GROUP BY r.canonical_symbol, r.timeframe
    ),
    queued AS (
        INSERT INTO tickagg.indicator_rewinds (canonical_symbol, timeframe, from_ts)
        SELECT f.canonical_symbol, f.timeframe, f.from_ts
        FROM firsts AS f
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = f.canonical_symbol AND s.timeframe = f.timeframe AND s.task_kind = 'indicators'
        RETURNING 1
    ),
    woken AS (
        UPDATE tickagg.data_agg_state AS s SET next_run_at = clock_timestamp()
        FROM firsts AS f
        WHERE
            s.canonical_symbol = f.canonical_symbol AND s.timeframe = f.timeframe AND s.task_kind = 'indicators'
            -- a disabled task has its rewind queued for when it is enabled again
            AND s.enabled
            -- a running task sees next_run_at past its claim in agg_finish and runs again
            AND (s.next_run_at > clock_timestamp() OR s.status = 'running')
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM queued) + (SELECT count(*) FROM woken) INTO v_woken;
    IF v_woken > 0 THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.indicators_rewind_from_derived_bars() IS
'Trigger: queue an indicator rewind to the first written derived bar of each series and wake its indicators task.';
