-- A batch of claimed indicators tasks of one timeframe (agg_claim_batch) run in
-- one call, so one statement and one transaction: when a minute closes the
-- buckets of a whole market, their indicators follow in one claim and one commit
-- instead of a claim, a step, a finish and a commit per series. Each task is
-- fenced (agg_batch_held: a task whose lease was taken over is skipped, nothing
-- of it written, logged 'lease_lost'), computed by indicators_steps (set-based
-- over the batch's series) exactly as its own run computes it (the same
-- checkpoints, rewinds and cursor), then finished and logged under its own run
-- id (agg_finish_batch). Every task's values,
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
    v_results jsonb[];
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_claim_tokens)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors)
        OR cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_run_ids) THEN
        RAISE EXCEPTION 'agg_run_indicators_batch: symbols, claim tokens, cursors and run ids differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one claim token, cursor and run id per symbol.';
    END IF;
    v_held := tickagg.agg_batch_held('indicators', p_timeframe, p_canonical_symbols, p_claim_tokens, p_cursors);

    -- an error rolls the whole batch back; the runner then runs its tasks one by
    -- one, so a bad series fails alone
    WITH held AS MATERIALIZED (
        SELECT h.symbol, h.cursor_ts, h.o
        FROM unnest(p_canonical_symbols, p_cursors, v_held) WITH ORDINALITY AS h (symbol, cursor_ts, held, o)
        WHERE h.held
    ),
    steps AS MATERIALIZED (
        SELECT r.canonical_symbol, r.result
        FROM tickagg.indicators_steps(
            p_timeframe,
            ARRAY(SELECT h.symbol FROM held AS h ORDER BY h.o),
            ARRAY(SELECT h.cursor_ts FROM held AS h ORDER BY h.o),
            p_max_bars
        ) AS r
    )
    SELECT array_agg(r.result ORDER BY c.o)
    INTO v_results
    FROM unnest(p_canonical_symbols, v_held) WITH ORDINALITY AS c (symbol, held, o)
    LEFT JOIN steps AS r ON c.held AND c.symbol = r.canonical_symbol;

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
