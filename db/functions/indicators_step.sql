-- One run of an indicators task: the technical indicators of up to p_max_bars
-- derived bars of one symbol and timeframe, resumed from the newest checkpoint
-- before the cursor or the first corrected bar (indicators_steps, which runs
-- an indicators batch's series the same way).
CREATE OR REPLACE FUNCTION tickagg.indicators_step(
    p_canonical_symbol text,
    p_timeframe text,
    p_cursor timestamptz,
    p_max_bars integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT s.result
    FROM tickagg.indicators_steps(p_timeframe, ARRAY[p_canonical_symbol], ARRAY[p_cursor], p_max_bars) AS s
$$;

COMMENT ON FUNCTION tickagg.indicators_step(text, text, timestamptz, integer) IS
'Compute the TA-Lib-exact indicators of up to p_max_bars derived bars from the last checkpoint before the cursor or the first corrected bar; returns jsonb with cursor_to for agg_finish.';
