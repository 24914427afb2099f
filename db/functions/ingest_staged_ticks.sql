-- Land one chunk of ticks a client COPYed into its temp table tickagg_ticks_stage
-- (typed; line_no = p_line_offset + row_no). A client whose file did not COPY
-- into typed columns stages text into tickagg_ticks_text_stage instead
-- (p_text_stage): fields that do not parse are rejected here, the rest move to
-- the typed stage. Every tick is judged by tick_rejection_reason, inline; bad
-- ticks go to tick_rejects with their line and reason, good ones into ticks.
-- A tick's identity is its trade_id when the file has one, else its content and
-- its occurrence among identical rows of the file (the 2nd identical row is
-- occurrence 2): distinct trades sharing a timestamp, price and size all land,
-- and the same file again lands nothing. Identical rows cut by a chunk boundary
-- are counted on (tick_batch_edges holds, per content, how many rows the earlier
-- chunks had at each symbol's last instant); in a file out of time order, an
-- identical row more than a chunk after its twin, at an instant before that
-- symbol's latest, restarts the count and is taken for a duplicate.
-- Missing daily partitions are created first.
-- The first chunk of a file passes p_batch_id NULL and gets a new batch; later
-- chunks pass it back, and the batch's counters accumulate.
CREATE OR REPLACE FUNCTION tickagg.ingest_staged_ticks(
    p_file_name text,
    p_batch_id bigint DEFAULT NULL,
    p_line_offset bigint DEFAULT 1,
    p_text_stage boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET timezone = 'UTC'
SET jit = off
AS $$
DECLARE
    v_batch_id bigint := p_batch_id;
    v_oldest timestamptz := now() - tickagg.setting('ticks_retention')::interval;
    v_newest timestamptz := now() + tickagg.setting('tick_future_tolerance')::interval;
    v_total bigint;
    v_unparsed bigint := 0;
    v_rejected bigint;
    v_landed bigint;
    v_attempts integer := 0;
    v_min timestamptz;
    v_max timestamptz;
    v_rejects jsonb;
BEGIN
    -- Tell plpgsql_check the shape of the caller's temp tables; no-ops at run time.
    PERFORM 'PRAGMA:TABLE: tickagg_ticks_stage (row_no bigint, canonical_symbol text, ts_utc timestamptz, bid double precision, ask double precision, last_price double precision, size double precision, trade_id text)';
    PERFORM 'PRAGMA:TABLE: tickagg_ticks_text_stage (line_no bigint, canonical_symbol text, ts_utc text, bid text, ask text, last_price text, size text, trade_id text, problem text)';
    PERFORM tickagg.assert_plain_stage('tickagg_ticks_stage');
    IF p_text_stage THEN
        PERFORM tickagg.assert_plain_stage('tickagg_ticks_text_stage');
    END IF;
    IF v_batch_id IS NULL THEN
        INSERT INTO tickagg.ingest_batches (file_name) VALUES (p_file_name) RETURNING batch_id INTO v_batch_id;
    ELSIF NOT EXISTS (SELECT 1 FROM tickagg.ingest_batches AS b WHERE b.batch_id = v_batch_id) THEN
        RAISE EXCEPTION 'no ingest batch %', v_batch_id USING ERRCODE = 'TK004';
    END IF;

    IF p_text_stage THEN
        WITH parsed AS MATERIALIZED (
            SELECT
                x.*,
                tickagg.parse_timestamptz(x.ts_utc) AS ts_v,
                tickagg.parse_float8(x.bid) AS bid_v,
                tickagg.parse_float8(x.ask) AS ask_v,
                tickagg.parse_float8(x.last_price) AS last_v,
                tickagg.parse_float8(x.size) AS size_v
            FROM pg_temp.tickagg_ticks_text_stage AS x
        ),
        judged AS MATERIALIZED (
            SELECT
                p.*,
                CASE
                    WHEN p.problem IS NOT NULL THEN p.problem
                    WHEN p.ts_v IS NULL AND p.ts_utc <> '' THEN format('ts_utc %L is not a timestamp', p.ts_utc)
                    WHEN p.bid_v IS NULL AND p.bid <> '' THEN format('bid %L is not a finite number', p.bid)
                    WHEN p.ask_v IS NULL AND p.ask <> '' THEN format('ask %L is not a finite number', p.ask)
                    WHEN p.last_v IS NULL AND p.last_price <> ''
                        THEN format('last %L is not a finite number', p.last_price)
                    WHEN p.size_v IS NULL AND p.size <> '' THEN format('size %L is not a finite number', p.size)
                END AS reason
            FROM parsed AS p
        ),
        rejected AS (
            INSERT INTO tickagg.tick_rejects (batch_id, line_no, canonical_symbol, raw_row, reason)
            SELECT
                v_batch_id, j.line_no, j.canonical_symbol,
                jsonb_build_object(
                    'canonical_symbol', j.canonical_symbol, 'ts_utc', j.ts_utc, 'bid', j.bid, 'ask', j.ask,
                    'last', j.last_price, 'size', j.size, 'trade_id', j.trade_id
                ),
                j.reason
            FROM judged AS j
            WHERE j.reason IS NOT NULL
            RETURNING 1
        ),
        staged AS (
            INSERT INTO pg_temp.tickagg_ticks_stage (
                row_no, canonical_symbol, ts_utc, bid, ask, last_price, size, trade_id
            )
            SELECT j.line_no - p_line_offset, j.canonical_symbol, j.ts_v, j.bid_v, j.ask_v, j.last_v, j.size_v, j.trade_id
            FROM judged AS j
            WHERE j.reason IS NULL
            RETURNING 1
        )
        SELECT count(*) INTO v_unparsed FROM rejected;
    END IF;

    SELECT
        count(*),
        min(s.ts_utc) FILTER (WHERE s.ts_utc BETWEEN v_oldest AND v_newest),
        max(s.ts_utc) FILTER (WHERE s.ts_utc BETWEEN v_oldest AND v_newest)
    INTO v_total, v_min, v_max
    FROM pg_temp.tickagg_ticks_stage AS s;
    PERFORM tickagg.ticks_ensure_partitions(v_min, v_max);

    -- A chunk whose rows are all new lands by a plain insert in file order (the
    -- order tick_seq follows), each row occurrence 1 after what the earlier chunks
    -- had at the same instant: ON CONFLICT's speculative insertion, and the sort
    -- by identity the occurrences of identical rows need, made the whole ingest
    -- 1.6x and 1.3x slower. A chunk that re-sends a tick or has identical rows
    -- raises unique_violation, and so does a producer that met another sending
    -- the same ticks in another order (deadlock_detected, after deadlock_timeout):
    -- the plain insert is undone and the chunk lands again, rows numbered among
    -- identical ones and written in key order (producers doing this wait for
    -- each other in one order), skipping ticks already stored.
    BEGIN
        INSERT INTO tickagg.ticks (canonical_symbol, ts_utc, bid, ask, last_price, size, trade_id, occurrence)
        SELECT
            s.canonical_symbol, s.ts_utc, s.bid, s.ask, s.last_price, s.size, s.trade_id,
            CASE WHEN s.trade_id IS NULL THEN coalesce(e.seen, 0) + 1 ELSE 1 END
        FROM pg_temp.tickagg_ticks_stage AS s
        LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
        LEFT JOIN tickagg.tick_batch_edges AS e
            ON
                e.batch_id = v_batch_id AND e.canonical_symbol = s.canonical_symbol AND e.ts_utc = s.ts_utc
                AND e.bid IS NOT DISTINCT FROM s.bid AND e.ask IS NOT DISTINCT FROM s.ask
                AND e.last_price IS NOT DISTINCT FROM s.last_price AND e.size IS NOT DISTINCT FROM s.size
                AND s.trade_id IS NULL
        WHERE tickagg.tick_rejection_reason(
            s.canonical_symbol, r.source_kind, r.price_kind, s.ts_utc, s.bid, s.ask, s.last_price, s.size,
            v_oldest, v_newest, s.trade_id
        ) IS NULL
        ORDER BY s.row_no;
        GET DIAGNOSTICS v_landed = ROW_COUNT;
    EXCEPTION WHEN unique_violation OR deadlock_detected THEN
        v_landed := NULL;
    END;
    WHILE v_landed IS NULL LOOP
        v_attempts := v_attempts + 1;
        BEGIN
            INSERT INTO tickagg.ticks (
                canonical_symbol, ts_utc, bid, ask, last_price, size, trade_id, occurrence, tick_seq
            )
            SELECT
                a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id,
                CASE WHEN a.trade_id IS NULL THEN coalesce(e.seen, 0) + row_number() OVER identical ELSE 1 END,
                a.tick_seq
            FROM (
                SELECT s.*, nextval('tickagg.tick_seq') AS tick_seq
                FROM pg_temp.tickagg_ticks_stage AS s
                LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
                WHERE tickagg.tick_rejection_reason(
                    s.canonical_symbol, r.source_kind, r.price_kind, s.ts_utc, s.bid, s.ask, s.last_price, s.size,
                    v_oldest, v_newest, s.trade_id
                ) IS NULL
                ORDER BY s.row_no
            ) AS a
            LEFT JOIN tickagg.tick_batch_edges AS e
                ON
                    e.batch_id = v_batch_id AND e.canonical_symbol = a.canonical_symbol AND e.ts_utc = a.ts_utc
                    AND e.bid IS NOT DISTINCT FROM a.bid AND e.ask IS NOT DISTINCT FROM a.ask
                    AND e.last_price IS NOT DISTINCT FROM a.last_price AND e.size IS NOT DISTINCT FROM a.size
                    AND a.trade_id IS NULL
            WINDOW identical AS (
                PARTITION BY a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id
                ORDER BY a.row_no
            )
            ORDER BY a.canonical_symbol, a.ts_utc, a.bid, a.ask, a.last_price, a.size, a.trade_id, a.row_no
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS v_landed = ROW_COUNT;
        EXCEPTION WHEN deadlock_detected THEN
            -- the other producer was still on its plain insert: it goes the same way now
            IF v_attempts >= 3 THEN
                RAISE;
            END IF;
        END;
    END LOOP;

    -- What the next chunk continues: per symbol, its last instant so far, and how
    -- many rows of each content the file has had there.
    WITH earlier AS (
        DELETE FROM tickagg.tick_batch_edges AS e
        WHERE e.batch_id = v_batch_id
        RETURNING e.canonical_symbol, e.ts_utc, e.bid, e.ask, e.last_price, e.size, e.seen
    ),
    last_instant AS (
        SELECT x.canonical_symbol, max(x.ts_utc) AS ts_utc
        FROM (
            SELECT s.canonical_symbol, max(s.ts_utc) AS ts_utc
            FROM pg_temp.tickagg_ticks_stage AS s
            WHERE s.trade_id IS NULL
            GROUP BY s.canonical_symbol
            UNION ALL
            SELECT w.canonical_symbol, w.ts_utc FROM earlier AS w
        ) AS x
        WHERE x.canonical_symbol IS NOT NULL
        GROUP BY x.canonical_symbol
    ),
    counted AS (
        SELECT s.canonical_symbol, s.ts_utc, s.bid, s.ask, s.last_price, s.size, 1 AS seen
        FROM pg_temp.tickagg_ticks_stage AS s
        INNER JOIN last_instant AS l ON l.canonical_symbol = s.canonical_symbol AND l.ts_utc = s.ts_utc
        WHERE s.trade_id IS NULL
        UNION ALL
        SELECT w.canonical_symbol, w.ts_utc, w.bid, w.ask, w.last_price, w.size, w.seen
        FROM earlier AS w
        INNER JOIN last_instant AS l ON l.canonical_symbol = w.canonical_symbol AND l.ts_utc = w.ts_utc
    )
    INSERT INTO tickagg.tick_batch_edges (batch_id, canonical_symbol, ts_utc, bid, ask, last_price, size, seen)
    SELECT v_batch_id, c.canonical_symbol, c.ts_utc, c.bid, c.ask, c.last_price, c.size, sum(c.seen)
    FROM counted AS c
    GROUP BY c.canonical_symbol, c.ts_utc, c.bid, c.ask, c.last_price, c.size;

    -- Every good row landed (a duplicate did not): when all of them landed, no row
    -- is bad or a duplicate, and judging them again would only cost a second pass.
    v_rejected := 0;
    IF v_landed < v_total THEN
        WITH rejected AS (
            INSERT INTO tickagg.tick_rejects (batch_id, line_no, canonical_symbol, raw_row, reason)
            SELECT
                v_batch_id, p_line_offset + j.row_no, j.canonical_symbol,
                jsonb_build_object(
                    'canonical_symbol', j.canonical_symbol, 'ts_utc', j.ts_utc, 'bid', j.bid, 'ask', j.ask,
                    'last', j.last_price, 'size', j.size, 'trade_id', j.trade_id
                ),
                j.reason
            FROM (
                SELECT
                    s.*,
                    tickagg.tick_rejection_reason(
                        s.canonical_symbol, r.source_kind, r.price_kind, s.ts_utc, s.bid, s.ask, s.last_price, s.size,
                        v_oldest, v_newest, s.trade_id
                    ) AS reason
                FROM pg_temp.tickagg_ticks_stage AS s
                LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
            ) AS j
            WHERE j.reason IS NOT NULL
            RETURNING 1
        )
        SELECT count(*) INTO v_rejected FROM rejected;
    END IF;

    v_total := v_total + v_unparsed;
    v_rejected := v_rejected + v_unparsed;

    SELECT coalesce(jsonb_agg(jsonb_build_object('line_no', f.line_no, 'reason', f.reason)), '[]')
    INTO v_rejects
    FROM (
        SELECT x.line_no, x.reason FROM tickagg.tick_rejects AS x
        WHERE x.batch_id = v_batch_id AND x.line_no > p_line_offset
        ORDER BY x.line_no LIMIT 20
    ) AS f;

    UPDATE tickagg.ingest_batches AS ib SET
        rows_total = ib.rows_total + v_total,
        rows_landed = ib.rows_landed + v_landed,
        rows_rejected = ib.rows_rejected + v_rejected,
        rows_unchanged = ib.rows_unchanged + (v_total - v_landed - v_rejected)
    WHERE ib.batch_id = v_batch_id;

    RETURN jsonb_build_object(
        'batch_id', v_batch_id,
        'rows_total', v_total,
        'rows_landed', v_landed,
        'rows_unchanged', v_total - v_landed - v_rejected,
        'rows_rejected', v_rejected,
        'rejects', v_rejects
    );
END
$$;

COMMENT ON FUNCTION tickagg.ingest_staged_ticks(text, bigint, bigint, boolean) IS
'Validate and land one chunk of ticks staged in the session''s temp table tickagg_ticks_stage (or tickagg_ticks_text_stage); rejects keep line and reason.';
