-- Land the rows a client COPYed into its temp table tickagg_bars_stage (all text;
-- line_no is the file line, or the row's number in the chunk when the client
-- COPYed a chunk of a file straight in: then p_line_offset is added). Every row
-- is judged here: unparseable fields, unknown symbols, repeats of an earlier
-- line, and bar_rejection_reason. Bad rows go to ingest_rejects with their line
-- and reason; good rows are upserted by source rank: a lower-ranked source never
-- replaces a higher one (such a row is counted as outranked), and a write with
-- identical content writes nothing (no row version, no change number, no
-- invalidation: such rows never reach the INSERT). A file may come in chunks, each its own call and transaction: the
-- first passes p_batch_id NULL and gets a new batch, later ones pass it back;
-- tickagg_bars_seen keeps which keys earlier chunks held, at which line, so a
-- repeat in a later chunk is still a "duplicate of line N".
-- A file may also be landed by p_parts sessions at once, each staging every
-- chunk and judging only the rows of its part (p_part, 0-based): a row's part
-- follows from its key (symbol and UTC day, read from the text without parsing
-- it when it is a time in UTC), so every repeat of a key is judged by the session
-- that saw its first line, and the parts never write the same key. A row whose
-- time does not parse goes by its line number.
CREATE OR REPLACE FUNCTION tickagg.ingest_staged_bars(
    p_file_name text,
    p_default_source text DEFAULT 'polygon_historical',
    p_batch_id bigint DEFAULT NULL,
    p_line_offset bigint DEFAULT 0,
    p_part integer DEFAULT 0,
    p_parts integer DEFAULT 1
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET timezone = 'UTC'
SET work_mem = '64MB'
-- one large statement per chunk: JIT compiles longer than it saves here
SET jit = off
-- The stage has no statistics and a part's filter is estimated to keep 0.5% of
-- it: the symbols and sources were then probed by index once per row (+40% on a
-- part's judging). Hash joins whatever the estimate; the per-row probes of
-- data_bars and of the stage by row address are LATERAL and stay nested loops.
SET enable_nestloop = off
AS $$
DECLARE
    v_batch_id bigint := p_batch_id;
    v_fast boolean := true;
    v_attempts integer := 0;
    v_keep_seen boolean;
    v_now timestamptz := now();
    v_future_tolerance interval := tickagg.setting('future_tolerance')::interval;
    v_total bigint;
    v_landed bigint;
    v_rejected bigint;
    v_outranked bigint;
    v_rejects jsonb;
BEGIN
    -- Tell plpgsql_check the shape of the caller's temp tables; no-ops at run time.
    PERFORM 'PRAGMA:TABLE: tickagg_bars_stage (line_no bigint, canonical_symbol text, ts_utc text, open text, high text, low text, close text, volume text, source text, vwap text, trade_count text)';
    PERFORM 'PRAGMA:TABLE: tickagg_bars_seen (canonical_symbol text, first_ts timestamptz, last_ts timestamptz, ts_list timestamptz[], line_list bigint[])';
    PERFORM tickagg.assert_plain_stage('tickagg_bars_stage');
    IF p_parts IS NULL OR p_parts < 1 OR p_part IS NULL OR p_part NOT BETWEEN 0 AND p_parts - 1 THEN
        RAISE EXCEPTION 'part % of % is not a part', p_part, p_parts
            USING ERRCODE = 'TK004', HINT = 'p_part counts from 0 and is below p_parts (at least 1)';
    END IF;
    -- A caller that sends a file in chunks creates tickagg_bars_seen first
    -- (runner/queries.py), so it outlives each chunk's commit; for a caller that
    -- sends all its rows at once it stays empty.
    v_keep_seen := to_regclass('pg_temp.tickagg_bars_seen') IS NOT NULL;
    IF NOT v_keep_seen THEN
        CREATE TEMP TABLE tickagg_bars_seen (
            canonical_symbol text,
            first_ts timestamptz,
            last_ts timestamptz,
            ts_list timestamptz [],
            line_list bigint []
        ) ON COMMIT DROP;
    END IF;
    PERFORM tickagg.assert_plain_stage('tickagg_bars_seen');
    IF v_batch_id IS NULL THEN
        INSERT INTO tickagg.ingest_batches (file_name) VALUES (p_file_name) RETURNING batch_id INTO v_batch_id;
    ELSE
        -- ingest_rejects has no foreign key (a check per rejected row): locked once
        -- here, the batch cannot be deleted before this chunk's rejects commit.
        PERFORM 1 FROM tickagg.ingest_batches AS b WHERE b.batch_id = v_batch_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no ingest batch %', v_batch_id USING ERRCODE = 'TK004';
        END IF;
    END IF;

    -- Fields of the everyday shape are cast directly, without a regular expression
    -- per field or a subtransaction per row: a timestamp that reads back as itself
    -- from timestamp (2024-01-31 23:59:00, also with T and Z) and prices of only
    -- digits and points. Both match the parse rules of parse_timestamptz and
    -- parse_float8 by construction and cast to the same values; anything else goes
    -- through those functions. A cast of such a field can still fail (a 31st of
    -- February, "1.2.3"): then the chunk is judged again by the functions alone.
    LOOP
        BEGIN
            WITH shaped AS (
                SELECT
                    x.*,
                    CASE WHEN x.ts_core LIKE '____-__-__ __:__%' THEN x.ts_core::timestamp END AS ts_cast
                FROM (
                    SELECT
                        g.*,
                        -- the text without a final Z, with a space at the 11th character
                        CASE
                            WHEN v_fast AND g.ts_utc ~ '^[0-9T :.Z-]+$'
                                THEN overlay(
                                    CASE WHEN right(g.ts_utc, 1) = 'Z' THEN left(g.ts_utc, -1) ELSE g.ts_utc END
                                    PLACING ' ' FROM 11 FOR 1
                                )
                        END AS ts_core,
                        v_fast
                        AND (g.open || g.high || g.low || g.close || g.volume) ~ '^[0-9.]+$'
                        AND greatest(
                            octet_length(g.open), octet_length(g.high), octet_length(g.low),
                            octet_length(g.close), octet_length(g.volume)
                        ) <= 40 AS prices_plain
                    FROM (
                        SELECT st.*, st.ctid AS stage_row
                        FROM pg_temp.tickagg_bars_stage AS st
                        WHERE
                            p_parts = 1
                            OR p_part = (
                                (
                                    hashtext(
                                        coalesce(st.canonical_symbol, '') || '|'
                                        || coalesce(
                                            -- the UTC day: the text's own for a time in UTC
                                            -- (read without parsing it), else the parsed one
                                            CASE
                                                WHEN
                                                    left(st.ts_utc, 19) LIKE '____-__-_____:__:__'
                                                    AND (length(st.ts_utc) = 19 OR st.ts_utc LIKE '___________________Z')
                                                    AND substr(st.ts_utc, 11, 1) IN ('T', ' ')
                                                    AND substr(st.ts_utc, 12, 2) < '24' AND substr(st.ts_utc, 18, 2) < '60'
                                                    THEN left(st.ts_utc, 10)
                                                ELSE to_char(tickagg.parse_timestamptz(st.ts_utc) AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                                            END,
                                            -- no time: by line
                                            st.line_no::text
                                        )
                                    )::bigint % p_parts + p_parts
                                ) % p_parts
                            )::integer
                    ) AS g
                    -- (OFFSET 0, twice: each expression computed once per row, not once per reference)
                    OFFSET 0
                ) AS x
                OFFSET 0
            ),
            parsed AS (
                SELECT
                    g.stage_row,
                    g.line_no + p_line_offset AS line_no,
                    g.canonical_symbol,
                    g.ts_utc AS ts_text,
                    g.open AS open_text,
                    g.high AS high_text,
                    g.low AS low_text,
                    g.close AS close_text,
                    g.volume AS volume_text,
                    g.vwap AS vwap_text,
                    g.trade_count AS trade_count_text,
                    CASE
                        WHEN g.ts_cast::text = g.ts_core AND substr(g.ts_utc, 11, 1) IN (' ', 'T')
                            THEN g.ts_cast AT TIME ZONE 'UTC'
                        ELSE tickagg.parse_timestamptz(g.ts_utc)
                    END AS ts_utc,
                    CASE WHEN g.prices_plain THEN g.open::float8 ELSE tickagg.parse_float8(g.open) END AS open,
                    CASE WHEN g.prices_plain THEN g.high::float8 ELSE tickagg.parse_float8(g.high) END AS high,
                    CASE WHEN g.prices_plain THEN g.low::float8 ELSE tickagg.parse_float8(g.low) END AS low,
                    CASE WHEN g.prices_plain THEN g.close::float8 ELSE tickagg.parse_float8(g.close) END AS close,
                    CASE
                        WHEN g.prices_plain THEN g.volume::float8
                        ELSE tickagg.parse_float8(nullif(g.volume, ''))
                    END AS volume,
                    tickagg.parse_float8(nullif(g.vwap, '')) AS vwap,
                    -- (a bounded repeat like [0-9]{1,18} makes the regular expression ~30x slower)
                    CASE
                        WHEN g.trade_count ~ '^ *[0-9]+ *$' AND length(trim(g.trade_count)) <= 18
                            THEN g.trade_count::bigint
                    END AS trade_count,
                    coalesce(nullif(trim(g.source), ''), p_default_source, 'polygon_historical') AS source
                FROM shaped AS g
                OFFSET 0  -- computed once per row, not once per reference
            ),
            -- Without the fields' text, which only rejects need (they read it from the
            -- stage again): the rows below are materialized and read several times.
            judged AS MATERIALIZED (
                SELECT
                    p.stage_row, p.line_no, p.canonical_symbol, p.ts_utc, p.open, p.high, p.low, p.close, p.volume,
                    p.vwap, p.trade_count, p.source,
                    coalesce(bs.source_rank, 0) AS source_rank,
                    CASE
                        WHEN r.canonical_symbol IS NULL
                            THEN format('unknown symbol %L', p.canonical_symbol)
                        WHEN p.ts_utc IS NULL
                            THEN format('ts_utc %L is not a timestamp', p.ts_text)
                        WHEN p.open IS NULL AND p.open_text <> ''
                            THEN format('open %L is not a finite number', p.open_text)
                        WHEN p.high IS NULL AND p.high_text <> ''
                            THEN format('high %L is not a finite number', p.high_text)
                        WHEN p.low IS NULL AND p.low_text <> ''
                            THEN format('low %L is not a finite number', p.low_text)
                        WHEN p.close IS NULL AND p.close_text <> ''
                            THEN format('close %L is not a finite number', p.close_text)
                        WHEN p.volume IS NULL AND p.volume_text <> ''
                            THEN format('volume %L is not a finite number', p.volume_text)
                        WHEN p.vwap IS NULL AND p.vwap_text <> ''
                            THEN format('vwap %L is not a finite number', p.vwap_text)
                        WHEN p.trade_count IS NULL AND p.trade_count_text <> ''
                            THEN format('trade_count %L is not a whole number', p.trade_count_text)
                        WHEN NOT coalesce(bs.is_source_name, p.source ~ '^[a-z0-9_]+$' AND length(p.source) <= 64)
                            THEN format('source %L is not a source name', p.source)
                        ELSE tickagg.bar_rejection_reason(
                            p.ts_utc, p.open, p.high, p.low, p.close, p.volume, p.vwap, p.trade_count, v_now,
                            v_future_tolerance
                        )
                    END AS reason
                FROM parsed AS p
                LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = p.canonical_symbol
                -- the name check once per known source, not once per row
                LEFT JOIN (
                    SELECT
                        b.source, b.source_rank, b.source ~ '^[a-z0-9_]+$' AND length(b.source) <= 64 AS is_source_name
                    FROM tickagg.bar_sources AS b
                ) AS bs ON bs.source = p.source
            ),
            -- Good keys of earlier chunks, unpacked only where their span meets this
            -- chunk's (a file in time order per symbol unpacks none).
            earlier AS MATERIALIZED (
                SELECT s.canonical_symbol, e.ts_utc, e.line_no
                FROM (
                    SELECT j.canonical_symbol, min(j.ts_utc) AS first_ts, max(j.ts_utc) AS last_ts
                    FROM judged AS j
                    WHERE j.reason IS NULL
                    GROUP BY j.canonical_symbol
                ) AS c
                INNER JOIN pg_temp.tickagg_bars_seen AS s
                    ON s.canonical_symbol = c.canonical_symbol AND s.first_ts <= c.last_ts AND s.last_ts >= c.first_ts
                CROSS JOIN LATERAL unnest(s.ts_list, s.line_list) AS e (ts_utc, line_no)
            ),
            -- A good row's first line: of an earlier chunk, else the first of this
            -- chunk's good rows with its key (one sort by key serves both; a hash
            -- aggregate of the repeated keys plus two joins cost more).
            ranked AS MATERIALIZED (
                SELECT
                    w.*,
                    CASE WHEN w.reason IS NULL THEN coalesce(e.line_no, w.first_in_chunk) END AS first_line
                FROM (
                    SELECT
                        j.*,
                        min(j.line_no) FILTER (WHERE j.reason IS NULL)
                            OVER (PARTITION BY j.canonical_symbol, j.ts_utc) AS first_in_chunk
                    FROM judged AS j
                ) AS w
                LEFT JOIN earlier AS e ON e.canonical_symbol = w.canonical_symbol AND e.ts_utc = w.ts_utc
            ),
            rejected AS (
                INSERT INTO tickagg.ingest_rejects (batch_id, line_no, raw_row, reason)
                SELECT
                    v_batch_id,
                    k.line_no,
                    to_jsonb(raw),  -- (jsonb_build_object of the same pairs cost 20% more)
                    coalesce(k.reason, format('duplicate of line %s', k.first_line))
                FROM ranked AS k
                -- the row's fields as text, fetched by row address
                CROSS JOIN LATERAL (
                    SELECT
                        k.canonical_symbol,
                        g.ts_utc,
                        g.open,
                        g.high,
                        g.low,
                        g.close,
                        g.volume,
                        g.vwap,
                        g.trade_count,
                        k.source
                    FROM pg_temp.tickagg_bars_stage AS g
                    WHERE g.ctid = k.stage_row
                    LIMIT 1  -- (kept a subquery: joined, the planner hashed the whole stage)
                ) AS raw
                WHERE k.reason IS NOT NULL OR k.line_no <> k.first_line
                RETURNING line_no, reason
            ),
            seen AS (
                INSERT INTO pg_temp.tickagg_bars_seen (canonical_symbol, first_ts, last_ts, ts_list, line_list)
                SELECT k.canonical_symbol, min(k.ts_utc), max(k.ts_utc), array_agg(k.ts_utc), array_agg(k.line_no)
                FROM ranked AS k
                WHERE v_keep_seen AND k.reason IS NULL AND k.line_no = k.first_line
                GROUP BY k.canonical_symbol
            ),
            -- Only rows that would change a stored bar are written. New keys take a
            -- plain INSERT (ON CONFLICT's speculative insertion doubled its cost); a key
            -- another session wrote meanwhile fails it, and the chunk is judged again.
            -- Changes of stored bars re-check the rank rule in the conflict arm.
            -- One index probe per row whatever the statistics say (a hash join would
            -- read all of data_bars for every chunk; a nested loop over a table
            -- believed empty re-read the pages this statement was filling, for every
            -- row: 290k rows took minutes). The writes below sort their rows first,
            -- so every probe is done before the first row is written.
            -- (with the rows a stored bar of a higher-ranked source keeps out, to count them)
            changed AS (
                SELECT
                    k.*,
                    b.canonical_symbol IS NOT NULL AS stored,
                    coalesce(k.source_rank < b.source_rank, false) AS outranked
                FROM ranked AS k
                LEFT JOIN LATERAL (
                    SELECT s.*
                    FROM tickagg.data_bars AS s
                    WHERE s.canonical_symbol = k.canonical_symbol AND s.timeframe = '1m' AND s.ts_utc = k.ts_utc
                    LIMIT 1
                ) AS b ON true
                WHERE
                    k.reason IS NULL AND k.line_no = k.first_line
                    AND (
                        b.canonical_symbol IS NULL
                        OR k.source_rank <> b.source_rank
                        OR (
                            k.source_rank = b.source_rank
                            AND (k.open, k.high, k.low, k.close, k.volume, k.vwap, k.trade_count, k.source)
                            IS DISTINCT FROM (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.source)
                        )
                    )
            ),
            inserted AS (
                INSERT INTO tickagg.data_bars (
                    canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, trade_count,
                    source, source_rank
                )
                SELECT
                    k.canonical_symbol, '1m', k.ts_utc, k.open, k.high, k.low, k.close, k.volume, k.vwap,
                    k.trade_count, k.source, k.source_rank
                FROM changed AS k
                WHERE NOT k.stored
                ORDER BY k.canonical_symbol, k.ts_utc
                RETURNING 1
            ),
            upserted AS (
                INSERT INTO tickagg.data_bars AS b (
                    canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, trade_count,
                    source, source_rank
                )
                SELECT
                    k.canonical_symbol, '1m', k.ts_utc, k.open, k.high, k.low, k.close, k.volume, k.vwap,
                    k.trade_count, k.source, k.source_rank
                FROM changed AS k
                WHERE k.stored AND NOT k.outranked
                ORDER BY k.canonical_symbol, k.ts_utc
                ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
                    open = excluded.open,
                    high = excluded.high,
                    low = excluded.low,
                    close = excluded.close,
                    volume = excluded.volume,
                    vwap = excluded.vwap,
                    trade_count = excluded.trade_count,
                    source = excluded.source,
                    source_rank = excluded.source_rank,
                    change_no = nextval('tickagg.bar_change_seq'),
                    updated_at = now()
                WHERE
                    excluded.source_rank > b.source_rank
                    OR (
                        excluded.source_rank = b.source_rank
                        AND (
                            excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
                            excluded.vwap, excluded.trade_count, excluded.source
                        ) IS DISTINCT FROM (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.source)
                    )
                RETURNING 1
            )
            SELECT
                (SELECT count(*) FROM ranked),
                (SELECT count(*) FROM inserted) + (SELECT count(*) FROM upserted),
                (SELECT count(*) FROM rejected),
                (SELECT count(*) FROM changed AS k WHERE k.outranked),
                (
                    SELECT coalesce(jsonb_agg(jsonb_build_object('line_no', f.line_no, 'reason', f.reason)), '[]')
                    FROM (SELECT x.line_no, x.reason FROM rejected AS x ORDER BY x.line_no LIMIT 20) AS f
                )
            INTO v_total, v_landed, v_rejected, v_outranked, v_rejects;
            EXIT;
        EXCEPTION
            WHEN data_exception THEN
                IF NOT v_fast THEN
                    RAISE;
                END IF;
                v_fast := false;
            WHEN unique_violation THEN
                v_attempts := v_attempts + 1;
                IF v_attempts > 3 THEN
                    RAISE;
                END IF;
        END;
    END LOOP;

    IF NOT v_keep_seen THEN
        DROP TABLE pg_temp.tickagg_bars_seen;  -- a later call in this transaction is a new file
    END IF;

    UPDATE tickagg.ingest_batches AS ib SET
        rows_total = ib.rows_total + v_total,
        rows_landed = ib.rows_landed + v_landed,
        rows_rejected = ib.rows_rejected + v_rejected,
        rows_outranked = ib.rows_outranked + v_outranked,
        rows_unchanged = ib.rows_unchanged + (v_total - v_landed - v_rejected - v_outranked)
    WHERE ib.batch_id = v_batch_id;

    RETURN jsonb_build_object(
        'batch_id', v_batch_id,
        'rows_total', v_total,
        'rows_landed', v_landed,
        'rows_unchanged', v_total - v_landed - v_rejected - v_outranked,
        'rows_outranked', v_outranked,
        'rows_rejected', v_rejected,
        'rejects', v_rejects
    );
END
$$;

COMMENT ON FUNCTION tickagg.ingest_staged_bars(text, text, bigint, bigint, integer, integer) IS
'Validate and land (a chunk of, or one part of a chunk of) the 1-minute bars staged in the session''s temp table tickagg_bars_stage; rejects keep line and reason.';
