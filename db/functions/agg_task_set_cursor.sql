-- `tickagg tasks reset --cursor TS`: repair a task's cursor (all tasks of a symbol
-- unless narrowed), for an admin only (revoked from the runner role in
-- 999_grants.sql): a cursor set wrong, e.g. past every bar to come, is otherwise
-- kept forever, since runs and `rebuild` only move it forward. The tasks are reset
-- as agg_task_reset resets them (same p_force rules), then each cursor is set to
-- the start of the bucket holding p_cursor (a minute for ticks_1m), so a run
-- materialises whole buckets from there: back, the buckets after it are built
-- again from their source (unchanged content writes nothing; changed content
-- reaches the levels above as late data does); forward, never past
-- agg_cursor_limit (TK004), as a run would not.
CREATE OR REPLACE FUNCTION tickagg.agg_task_set_cursor(
    p_canonical_symbol text,
    p_timeframe text,
    p_task_kind text,
    p_cursor timestamptz,
    p_force boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_reset jsonb;
    v_timeframes text[];
    v_kinds text[];
    v_cursors timestamptz[];
    v_past text;
    v_tasks jsonb;
BEGIN
    IF p_cursor IS NULL OR NOT isfinite(p_cursor) THEN
        RAISE EXCEPTION 'a cursor must be a finite time, got %', p_cursor
            USING ERRCODE = 'TK004', HINT = 'Pass an ISO time, e.g. 2025-09-01T00:00:00Z.';
    END IF;
    v_reset := tickagg.agg_task_reset(p_canonical_symbol, p_timeframe, p_task_kind, p_force);

    SELECT
        array_agg(n.timeframe),
        array_agg(n.task_kind),
        array_agg(n.cursor_ts),
        string_agg(format('%s %s (frontier %s)', n.timeframe, n.task_kind, n.frontier), ', ' ORDER BY n.timeframe, n.task_kind)
            FILTER (WHERE n.cursor_ts > n.old_cursor AND n.cursor_ts > n.frontier)
    INTO v_timeframes, v_kinds, v_cursors, v_past
    FROM (
        SELECT
            a.*,
            CASE
                WHEN a.cursor_ts > a.old_cursor
                    THEN tickagg.agg_cursor_limit(p_canonical_symbol, a.timeframe, a.task_kind, a.cursor_ts)
            END AS frontier
        FROM (
            SELECT
                s.timeframe,
                s.task_kind,
                s.last_agg_bar_ts_utc AS old_cursor,
                CASE
                    WHEN s.task_kind = 'rollup' THEN coalesce(
                        lower(tickagg.bucket_bounds(r.calendar_code, s.timeframe, p_cursor)), p_cursor
                    )
                    WHEN s.task_kind = 'ticks_1m' THEN date_trunc('minute', p_cursor)
                    ELSE p_cursor
                END AS cursor_ts
            FROM tickagg.data_agg_state AS s
            INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
            WHERE
                s.canonical_symbol = p_canonical_symbol
                AND (p_timeframe IS NULL OR s.timeframe = p_timeframe)
                AND (p_task_kind IS NULL OR s.task_kind = p_task_kind)
        ) AS a
    ) AS n;
    IF v_past IS NOT NULL THEN
        RAISE EXCEPTION 'cursor % of % is past the frontier of: %', p_cursor, p_canonical_symbol, v_past
            USING ERRCODE = 'TK004',
                  HINT = 'A cursor may move forward only as far as its source has data; pass an earlier time.';
    END IF;

    WITH changed AS (
        UPDATE tickagg.data_agg_state AS s SET
            last_agg_bar_ts_utc = n.cursor_ts,
            pending_bucket_end = NULL,
            updated_at = now()
        FROM unnest(v_timeframes, v_kinds, v_cursors) AS n (timeframe, task_kind, cursor_ts)
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = n.timeframe AND s.task_kind = n.task_kind
        RETURNING s.timeframe, s.task_kind, s.enabled, s.last_agg_bar_ts_utc AS cursor_ts
    )
    SELECT jsonb_agg(to_jsonb(c) ORDER BY c.timeframe, c.task_kind) INTO v_tasks FROM changed AS c;

    RETURN v_reset || jsonb_build_object('tasks', v_tasks);
END
$$;

COMMENT ON FUNCTION tickagg.agg_task_set_cursor(text, text, text, timestamptz, boolean) IS
'Admin repair of task cursors (tasks reset --cursor): reset as agg_task_reset, cursor set to the bucket holding p_cursor, never forward past agg_cursor_limit.';
