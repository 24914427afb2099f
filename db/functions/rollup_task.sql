-- The rollup task of a symbol and timeframe, or the error a user can act on:
-- unknown symbol (TK002), not a derived timeframe (TK003), no task yet (TK006).
CREATE OR REPLACE FUNCTION tickagg.rollup_task(p_canonical_symbol text, p_timeframe text)
RETURNS tickagg.data_agg_state
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM tickagg.core_asset_registry_all AS r WHERE r.canonical_symbol = p_canonical_symbol
    ) THEN
        RAISE EXCEPTION 'unknown symbol %', p_canonical_symbol
            USING ERRCODE = 'TK002',
                  HINT = 'Register it: tickagg symbols add SYMBOL --calendar CODE.';
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM tickagg.timeframes AS t
        WHERE t.timeframe = p_timeframe AND t.source_timeframe IS NOT NULL
    ) THEN
        RAISE EXCEPTION 'timeframe % is not a derived timeframe', p_timeframe
            USING ERRCODE = 'TK003',
                  HINT = 'Derived timeframes are listed in tickagg.timeframes (5m, 15m, 30m, 1h, 4h, 1d, 1w).';
    END IF;

    SELECT * INTO v_task
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = 'rollup';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Missing config in data_agg_state for % %', p_canonical_symbol, p_timeframe
            USING ERRCODE = 'TK006',
                  HINT = 'Create the tasks: SELECT tickagg.sync_agg_state_from_registry(''prod'');';
    END IF;
    RETURN v_task;
END
$$;

COMMENT ON FUNCTION tickagg.rollup_task(text, text) IS
'The rollup task row of a symbol and timeframe; raises TK002/TK003/TK006 with a hint when there is none.';
