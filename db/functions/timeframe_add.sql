-- A custom fixed-step timeframe (2h, 3m, 65m, ...) built from an existing one,
-- anchored at each session's open like the shipped steps, and (p_for_symbols)
-- wanted by every registered symbol, so `sync` creates its tasks. Refused with
-- the reason when its buckets would not nest: the step must be a whole multiple
-- of the source's and shorter than a day (days and weeks are 1d and 1w).
CREATE OR REPLACE FUNCTION tickagg.timeframe_add(
    p_timeframe text,
    p_step interval,
    p_source_timeframe text,
    p_for_symbols boolean DEFAULT true
)
RETURNS TABLE (timeframe text, step interval, source_timeframe text, sort_order integer, symbols bigint)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_source_step interval;
    v_problem text;
    v_symbols bigint := 0;
BEGIN
    IF p_timeframe IS NULL OR p_timeframe !~ '^[A-Za-z0-9_]{1,16}$' THEN
        RAISE EXCEPTION 'invalid timeframe name: %', coalesce(p_timeframe, 'NULL')
            USING ERRCODE = 'TK004', HINT = 'Use 1-16 letters, digits or _, e.g. 2h or 65m.';
    END IF;
    IF EXISTS (SELECT FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe) THEN
        RAISE EXCEPTION 'timeframe % exists already', p_timeframe
            USING ERRCODE = 'TK004', HINT = '`tickagg timeframes` lists them.';
    END IF;
    SELECT t.step INTO v_source_step
    FROM tickagg.timeframes AS t
    WHERE t.timeframe = p_source_timeframe AND t.bucket_kind IN ('minute', 'fixed');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown or non-intraday source timeframe: %', coalesce(p_source_timeframe, 'NULL')
            USING ERRCODE = 'TK003',
                  HINT = 'Build from 1m or a fixed step: ' || (
                      SELECT string_agg(t.timeframe, ', ' ORDER BY t.sort_order)
                      FROM tickagg.timeframes AS t WHERE t.bucket_kind IN ('minute', 'fixed')
                  ) || '.';
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' OR p_step >= interval '1 day'
        OR date_part('month', p_step) <> 0 OR date_part('day', p_step) <> 0
        OR extract(EPOCH FROM p_step)::numeric % 60 <> 0 THEN
        RAISE EXCEPTION 'step % is not a whole number of minutes under a day', coalesce(p_step::text, 'NULL')
            USING ERRCODE = 'TK004', HINT = 'Use e.g. ''2 hours'' or ''65 minutes''; days and weeks are 1d and 1w.';
    END IF;
    IF p_step <= v_source_step OR extract(EPOCH FROM p_step)::bigint % extract(EPOCH FROM v_source_step)::bigint <> 0 THEN
        RAISE EXCEPTION 'step % does not nest %-buckets of % (it must be a whole multiple, longer)',
            p_step, v_source_step, p_source_timeframe
            USING ERRCODE = 'TK005', HINT = 'Pick a source whose step divides the new one, e.g. 1m or 5m.';
    END IF;

    -- sort_order is unique and orders by length: make room, then renumber
    UPDATE tickagg.timeframes AS t SET sort_order = -t.sort_order;
    INSERT INTO tickagg.timeframes AS t (timeframe, bucket_kind, step, source_timeframe, sort_order)
    VALUES (p_timeframe, 'fixed', p_step, p_source_timeframe, 0);
    UPDATE tickagg.timeframes AS t SET sort_order = o.n
    FROM (
        SELECT
            x.timeframe,
            row_number() OVER (
                ORDER BY array_position(ARRAY['minute', 'fixed', 'day', 'week'], x.bucket_kind), x.step, x.timeframe
            )::integer AS n
        FROM tickagg.timeframes AS x
    ) AS o
    WHERE o.timeframe = t.timeframe;

    SELECT h.problem INTO v_problem
    FROM tickagg.timeframe_hierarchy_problems() AS h
    WHERE h.timeframe = p_timeframe;
    IF FOUND THEN
        RAISE EXCEPTION 'timeframe % cannot be built from %: %', p_timeframe, p_source_timeframe, v_problem
            USING ERRCODE = 'TK005';
    END IF;

    IF p_for_symbols THEN
        UPDATE tickagg.core_asset_registry_all AS r
        SET timeframes = r.timeframes || p_timeframe
        WHERE NOT p_timeframe = ANY(r.timeframes);
        GET DIAGNOSTICS v_symbols = ROW_COUNT;
    END IF;
    RETURN QUERY
    SELECT t.timeframe, t.step, t.source_timeframe, t.sort_order, v_symbols
    FROM tickagg.timeframes AS t
    WHERE t.timeframe = p_timeframe;
END;
$$;

COMMENT ON FUNCTION tickagg.timeframe_add(text, interval, text, boolean) IS
'Add a custom fixed-step timeframe built from an intraday one (refused unless its buckets nest), wanted by every registered symbol unless p_for_symbols is false.';
