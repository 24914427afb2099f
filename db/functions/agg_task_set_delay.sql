-- Set the aggregation_delay of a symbol's tasks (NULL p_task_kind: every kind).
-- For a ticks_1m task it is how long after its end a minute closes when no later
-- tick has closed it; a very long delay leaves only the data rule (a tick of a
-- later minute closes the earlier ones), which replays of past ticks at speed
-- (the demo, benchmarks/bench_ticks.py) rely on.
CREATE OR REPLACE FUNCTION tickagg.agg_task_set_delay(
    p_canonical_symbol text,
    p_delay interval,
    p_task_kind text DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_changed integer;
BEGIN
    IF p_delay IS NULL OR p_delay < interval '0' THEN
        RAISE EXCEPTION 'invalid delay %', p_delay
            USING ERRCODE = 'TK004', HINT = 'Pass a non-negative interval, e.g. ''200 milliseconds''.';
    END IF;
    UPDATE tickagg.data_agg_state AS s SET aggregation_delay = p_delay, updated_at = now()
    WHERE s.canonical_symbol = p_canonical_symbol AND (p_task_kind IS NULL OR s.task_kind = p_task_kind);
    GET DIAGNOSTICS v_changed = ROW_COUNT;
    IF v_changed = 0 THEN
        RAISE EXCEPTION 'no task for % (kind %)', p_canonical_symbol, coalesce(p_task_kind, 'any')
            USING ERRCODE = 'TK006', HINT = '`tickagg sync` creates tasks from the registry.';
    END IF;
    RETURN v_changed;
END
$$;

COMMENT ON FUNCTION tickagg.agg_task_set_delay(text, interval, text) IS
'Set aggregation_delay of a symbol''s tasks (optionally one task kind); returns how many tasks changed.';
