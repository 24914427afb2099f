-- Land the rows a client COPYed into its temp table tickagg_bars_stage (all text,
-- with file line numbers). Every row is judged here: unparseable fields, unknown
-- symbols, repeats of an earlier line, and bar_rejection_reason. Bad rows go to
-- ingest_rejects with their line and reason; good rows are upserted by source
-- rank: a lower-ranked source never replaces a higher one, and a same-ranked
-- write with identical content is a no-op. One statement for the whole file.
CREATE OR REPLACE FUNCTION tickagg.ingest_staged_bars(
    p_file_name text,
    p_default_source text DEFAULT 'polygon_historical'
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET timezone = 'UTC'
SET work_mem = '64MB'
AS $$
DECLARE
    v_batch_id bigint;
    v_total bigint;
    v_landed bigint;
    v_rejected bigint;
    v_rejects jsonb;
BEGIN
    -- Tells plpgsql_check the shape of the caller's temp table; a no-op at run time.
    PERFORM 'PRAGMA:TABLE: tickagg_bars_stage (line_no bigint, canonical_symbol text, ts_utc text, open text, high text, low text, close text, volume text, source text, vwap text, trade_count text)';
    PERFORM tickagg.assert_plain_stage('tickagg_bars_stage');
    INSERT INTO tickagg.ingest_batches (file_name) VALUES (p_file_name) RETURNING batch_id INTO v_batch_id;

    -- Materialised so the parsed values reach bar_rejection_reason as plain columns,
    -- which lets the planner inline it instead of calling it per row.
    WITH parsed AS MATERIALIZED (
        SELECT
            g.line_no,
            g.canonical_symbol,
            g.ts_utc AS ts_text,
            g.open AS open_text,
            g.high AS high_text,
            g.low AS low_text,
            g.close AS close_text,
            g.volume AS volume_text,
            g.vwap AS vwap_text,
            g.trade_count AS trade_count_text,
            tickagg.parse_timestamptz(g.ts_utc) AS ts_utc,
            tickagg.parse_float8(g.open) AS open,
            tickagg.parse_float8(g.high) AS high,
            tickagg.parse_float8(g.low) AS low,
            tickagg.parse_float8(g.close) AS close,
            tickagg.parse_float8(coalesce(nullif(g.volume, ''), '0')) AS volume,
            tickagg.parse_float8(nullif(g.vwap, '')) AS vwap,
            CASE WHEN g.trade_count ~ '^ *[0-9]{1,18} *$' THEN g.trade_count::bigint END AS trade_count,
            coalesce(nullif(trim(g.source), ''), p_default_source, 'polygon_historical') AS source
        FROM pg_temp.tickagg_bars_stage AS g
    ),
    judged AS MATERIALIZED (
        SELECT
            p.*,
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
                WHEN p.volume IS NULL
                    THEN format('volume %L is not a finite number', p.volume_text)
                WHEN p.vwap IS NULL AND p.vwap_text <> ''
                    THEN format('vwap %L is not a finite number', p.vwap_text)
                WHEN p.trade_count IS NULL AND p.trade_count_text <> ''
                    THEN format('trade_count %L is not a whole number', p.trade_count_text)
                WHEN p.source !~ '^[a-z0-9_]{1,64}$'
                    THEN format('source %L is not a source name', p.source)
                ELSE tickagg.bar_rejection_reason(
                    p.ts_utc, p.open, p.high, p.low, p.close, p.volume, p.vwap, p.trade_count
                )
            END AS reason
        FROM parsed AS p
        LEFT JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = p.canonical_symbol
        LEFT JOIN tickagg.bar_sources AS bs ON bs.source = p.source
    ),
    ranked AS MATERIALIZED (
        SELECT
            j.*,
            CASE
                WHEN j.reason IS NULL
                    THEN min(j.line_no) FILTER (WHERE j.reason IS NULL)
                        OVER (PARTITION BY j.canonical_symbol, j.ts_utc)
            END AS first_line
        FROM judged AS j
    ),
    rejected AS (
        INSERT INTO tickagg.ingest_rejects (batch_id, line_no, raw_row, reason)
        SELECT
            v_batch_id,
            k.line_no,
            jsonb_build_object(
                'canonical_symbol', k.canonical_symbol, 'ts_utc', k.ts_text, 'open', k.open_text,
                'high', k.high_text, 'low', k.low_text, 'close', k.close_text, 'volume', k.volume_text,
                'vwap', k.vwap_text, 'trade_count', k.trade_count_text, 'source', k.source
            ),
            coalesce(k.reason, format('duplicate of line %s', k.first_line))
        FROM ranked AS k
        WHERE k.reason IS NOT NULL OR k.line_no <> k.first_line
        RETURNING line_no, reason
    ),
    landed AS (
        INSERT INTO tickagg.data_bars AS b (
            canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, trade_count,
            source, source_rank
        )
        SELECT
            k.canonical_symbol, '1m', k.ts_utc, k.open, k.high, k.low, k.close, k.volume, k.vwap, k.trade_count,
            k.source, k.source_rank
        FROM ranked AS k
        WHERE k.reason IS NULL AND k.line_no = k.first_line
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
                    excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume, excluded.vwap,
                    excluded.trade_count, excluded.source
                ) IS DISTINCT FROM (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.source)
            )
        RETURNING 1
    )
    SELECT
        (SELECT count(*) FROM ranked),
        (SELECT count(*) FROM landed),
        (SELECT count(*) FROM rejected),
        (
            SELECT coalesce(jsonb_agg(jsonb_build_object('line_no', f.line_no, 'reason', f.reason)), '[]')
            FROM (SELECT x.line_no, x.reason FROM rejected AS x ORDER BY x.line_no LIMIT 20) AS f
        )
    INTO v_total, v_landed, v_rejected, v_rejects;

    UPDATE tickagg.ingest_batches AS ib SET
        rows_total = v_total,
        rows_landed = v_landed,
        rows_rejected = v_rejected,
        rows_unchanged = v_total - v_landed - v_rejected
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

COMMENT ON FUNCTION tickagg.ingest_staged_bars(text, text) IS
'Validate and land the 1-minute bars staged in the session''s temp table tickagg_bars_stage; rejects keep line and reason.';
