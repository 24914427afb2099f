-- The SQL path for producers that write ticks themselves: one call per batch,
-- columns as parallel arrays (one element per tick). Judged exactly like a
-- file (tick_rejection_reason, inline): bad ticks go to tick_rejects (batch_id
-- NULL) with their reason and array position, good ones land with the arrival
-- order given here, so equal timestamps keep it. A tick's identity is as in a
-- file (ingest_staged_ticks): its trade id when p_trade_id gives one, else its
-- content and its occurrence among identical ticks of this call, so distinct
-- trades sharing a timestamp, price and size all land and the same call again
-- lands nothing.
-- Returns jsonb counts and the first rejects.
CREATE OR REPLACE FUNCTION tickagg.ingest_ticks(
    p_canonical_symbol text[],
    p_ts_utc timestamptz[],
    p_bid double precision[] DEFAULT NULL,
    p_ask double precision[] DEFAULT NULL,
    p_last_price double precision[] DEFAULT NULL,
    p_size double precision[] DEFAULT NULL,
    p_trade_id text[] DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_oldest timestamptz := now() - tickagg.setting('ticks_retention')::interval;
    v_newest timestamptz := now() + tickagg.setting('tick_future_tolerance')::interval;
    v_n integer := coalesce(cardinality(p_canonical_symbol), 0);
    v_min timestamptz;
    v_max timestamptz;
    v_landed bigint;
    v_rejected bigint;
    v_rejects jsonb;
BEGIN
    IF coalesce(cardinality(p_ts_utc), 0) <> v_n
        OR (p_bid IS NOT NULL AND cardinality(p_bid) <> v_n)
        OR (p_ask IS NOT NULL AND cardinality(p_ask) <> v_n)
        OR (p_last_price IS NOT NULL AND cardinality(p_last_price) <> v_n)
        OR (p_size IS NOT NULL AND cardinality(p_size) <> v_n)
        OR (p_trade_id IS NOT NULL AND cardinality(p_trade_id) <> v_n)
    THEN
        RAISE EXCEPTION 'ingest_ticks: arrays of different lengths'
            USING ERRCODE = 'TK004', HINT = 'Pass one element per tick in every array (NULL where a field is missing).';
    END IF;

    SELECT min(t) FILTER (WHERE t BETWEEN v_oldest AND v_newest), max(t) FILTER (WHERE t BETWEEN v_oldest AND v_newest)
    INTO v_min, v_max
    FROM unnest(p_ts_utc) AS u (t);
    PERFORM tickagg.ticks_ensure_partitions(v_min, v_max);

    WITH judged AS MATERIALIZED (
        SELECT
            u.*,
            tickagg.tick_rejection_reason(
                u.canonical_symbol, r.source_kind, r.price_kind, u.ts_utc, u.bid, u.ask, u.last_price, u.size,
                v_oldest, v_newest, u.trade_id
            ) AS reason
        FROM unnest(
            p_canonical_symbol, p_ts_utc,
            coalesce(p_bid, array_fill(NULL::double precision, ARRAY[v_n])),
            coalesce(p_ask, array_fill(NULL::double precision, ARRAY[v_n])),
            coalesce(p_last_price, array_fill(NULL::double precision, ARRAY[v_n])),
            coalesce(p_size, array_fill(NULL::double precision, ARRAY[v_n])),
            coalesce(p_trade_id, array_fill(NULL::text, ARRAY[v_n]))
        ) WITH ORDINALITY AS u (canonical_symbol, ts_utc, bid, ask, last_price, size, trade_id, pos)
        LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = u.canonical_symbol
    ),
    -- Arrival order (tick_seq) is the order given; the rows are written in key
    -- order, so producers sending the same ticks in different orders wait for
    -- each other's uniqueness checks in one order and never deadlock.
    landed AS (
        INSERT INTO tickagg.ticks (
            canonical_symbol, ts_utc, bid, ask, last_price, size, trade_id, occurrence, tick_seq
        )
        SELECT
            a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id,
            CASE WHEN a.trade_id IS NULL THEN row_number() OVER identical ELSE 1 END,
            a.tick_seq
        FROM (
            SELECT j.*, nextval('tickagg.tick_seq') AS tick_seq
            FROM judged AS j
            WHERE j.reason IS NULL
            ORDER BY j.pos
        ) AS a
        WINDOW identical AS (
            PARTITION BY a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id
            ORDER BY a.pos
        )
        ORDER BY a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id, a.pos
        ON CONFLICT DO NOTHING
        RETURNING 1
    ),
    rejected AS (
        INSERT INTO tickagg.tick_rejects (line_no, canonical_symbol, raw_row, reason)
        SELECT
            j.pos, j.canonical_symbol,
            jsonb_build_object(
                'canonical_symbol', j.canonical_symbol, 'ts_utc', j.ts_utc, 'bid', j.bid, 'ask', j.ask,
                'last', j.last_price, 'size', j.size, 'trade_id', j.trade_id
            ),
            j.reason
        FROM judged AS j
        WHERE j.reason IS NOT NULL
        RETURNING line_no, reason
    )
    SELECT
        (SELECT count(*) FROM landed),
        (SELECT count(*) FROM rejected),
        (
            SELECT coalesce(jsonb_agg(jsonb_build_object('position', f.line_no, 'reason', f.reason)), '[]')
            FROM (SELECT x.line_no, x.reason FROM rejected AS x ORDER BY x.line_no LIMIT 20) AS f
        )
    INTO v_landed, v_rejected, v_rejects;

    RETURN jsonb_build_object(
        'rows_total', v_n,
        'rows_landed', v_landed,
        'rows_unchanged', v_n - v_landed - v_rejected,
        'rows_rejected', v_rejected,
        'rejects', v_rejects
    );
END
$$;

COMMENT ON FUNCTION tickagg.ingest_ticks(
    text[], timestamptz[], double precision[], double precision[], double precision[], double precision[], text[]
) IS
'Validate and land a batch of ticks given as parallel arrays (the SQL path for producers); bad ticks go to tick_rejects.';
