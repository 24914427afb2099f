-- A batch of claimed indicators tasks of one timeframe (agg_claim_batch) run in
-- one call, so one statement and one transaction: when a minute closes the
-- buckets of a whole market, their indicators follow in one claim and one commit
-- instead of a claim, a step, a finish and a commit per series. Each task is
-- fenced (agg_batch_held: a task whose lease was taken over is skipped, nothing
-- of it written, logged 'lease_lost'), computed by indicators_step exactly as its
-- own run computes it (the same checkpoints, rewinds and cursor), then finished
-- and logged under its own run id (agg_finish_batch). Every task's values,
-- cursor, finish and log row commit together with every other's, or none does.
-- Returns one row per task: 'success' with indicators_step's jsonb, or
-- 'lease_lost'.
CREATE OR REPLACE FUNCTION tickagg.agg_run_indicators_batch(
    p_timeframe text,
    p_canonical_symbols text[],
    p_claim_tokens uuid[],
    p_cursors timestamptz[],
    p_run_ids uuid[],
    p_started_at timestamptz,
    p_max_bars integer DEFAULT NULL
)
RETURNS TABLE (canonical_symbol text, outcome text, result jsonb)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_held boolean[];
    v_results jsonb[] := '{}';
    v_step jsonb;
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_claim_tokens)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_run_ids) THEN
        RAISE EXCEPTION 'agg_run_indicators_batch: symbols, claim tokens, cursors and run ids differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one claim token, cursor and run id per symbol.';
    END IF;
    v_held := tickagg.agg_batch_held('indicators', p_timeframe, p_canonical_symbols, p_claim_tokens, p_cursors);

    FOR v_i IN 1 .. coalesce(cardinality(p_canonical_symbols), 0) LOOP
        v_step := NULL;
        IF v_held[v_i] THEN
            -- an error rolls the whole batch back; the runner then runs its tasks
            -- one by one, so a bad series fails alone
            v_step := tickagg.indicators_step(p_canonical_symbols[v_i], p_timeframe, p_cursors[v_i], p_max_bars);
        END IF;
        v_results := v_results || v_step;
    END LOOP;

    PERFORM tickagg.agg_finish_batch(
        'indicators', p_timeframe, p_canonical_symbols, p_claim_tokens, p_cursors, p_run_ids, p_started_at,
        v_results
    );
    RETURN QUERY
    SELECT c.symbol, CASE WHEN c.result IS NULL THEN 'lease_lost' ELSE 'success' END, c.result
    FROM unnest(p_canonical_symbols, v_results) AS c (symbol, result);
END
$$;

COMMENT ON FUNCTION tickagg.agg_run_indicators_batch(text, text[], uuid[], timestamptz[], uuid[], timestamptz, integer) IS
'Run a batch of claimed indicators tasks of one timeframe in one statement: fenced per task, indicators_step per series, each finished and logged.';
