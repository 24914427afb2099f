-- The fencing of a batch (agg_run_rollup_batch, agg_run_indicators_batch): the
-- batch's task rows locked in key order (two batches never deadlock), and for
-- each task, in the order given, whether it is still this claim's: running
-- under the same claim token at the same cursor. A task whose lease expired and
-- was taken over by another runner is false: the batch skips it. A locked row
-- cannot be reclaimed (claims skip locked rows), so what is held here stays held
-- until the batch commits.
CREATE OR REPLACE FUNCTION tickagg.agg_batch_held(
    p_task_kind text,
    p_timeframe text,
    p_canonical_symbols text[],
    p_claim_tokens uuid[],
    p_cursors timestamptz[]
)
RETURNS boolean[]
LANGUAGE sql
VOLATILE
AS $$
    SELECT array_agg(
        l.status IS NOT DISTINCT FROM 'running'
        AND l.claim_token IS NOT DISTINCT FROM c.claim_token
        AND l.last_agg_bar_ts_utc IS NOT DISTINCT FROM c.cursor_ts
        ORDER BY c.ord
    )
    FROM unnest(p_canonical_symbols, p_claim_tokens, p_cursors) WITH ORDINALITY AS c (symbol, claim_token, cursor_ts, ord)
    LEFT JOIN (
        SELECT s.canonical_symbol AS symbol, s.status, s.claim_token, s.last_agg_bar_ts_utc
        FROM tickagg.data_agg_state AS s
        WHERE
            s.canonical_symbol = ANY(p_canonical_symbols)
            AND s.timeframe = p_timeframe
            AND s.task_kind = p_task_kind
        ORDER BY s.canonical_symbol
        FOR UPDATE OF s
    ) AS l ON l.symbol = c.symbol
$$;

COMMENT ON FUNCTION tickagg.agg_batch_held(text, text, text[], uuid[], timestamptz[]) IS
'Lock a batch''s task rows in key order; per task, whether its claim (token and cursor) still holds.';
