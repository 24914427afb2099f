-- The bars of some symbols in one timeframe as readers want them: 1-minute bars
-- from data_bars, every other timeframe through the ohlcv view (materialised plus
-- the real-time tail, so the newest minute counts), in (symbol, bucket) order,
-- with the chosen indicators as one jsonb object per bar; with p_fill 'null' or
-- 'prev', one row per bucket of open market time (the calendar decides), a
-- missing one empty or flat at the previous close, flagged is_filled. One definition for
-- `tickagg bars`, tickagg.read_bars() and anyone in SQL. SECURITY DEFINER so a
-- reading role needs no table privileges; jit off because a one-day read costs
-- more to compile than to run.
CREATE OR REPLACE FUNCTION tickagg.bars_read(
    p_symbols text[],
    p_timeframe text,
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_indicators text[] DEFAULT NULL,
    p_include_open boolean DEFAULT false,
    p_fill text DEFAULT 'none'
)
RETURNS TABLE (
    canonical_symbol text,
    bucket timestamptz,
    bucket_end timestamptz,
    open double precision,
    high double precision,
    low double precision,
    close double precision,
    volume double precision,
    vwap double precision,
    trade_count bigint,
    source_candles integer,
    expected_candles integer,
    quality_score smallint,
    is_partial boolean,
    is_filled boolean,
    indicators jsonb
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_unknown text[];
    v_known text[];
    v_symbol text;
    v_calendar text;
    v_from timestamptz;
    v_to timestamptz;
BEGIN
    IF p_symbols IS NULL OR cardinality(p_symbols) = 0 THEN
        RAISE EXCEPTION 'no symbol given'
            USING ERRCODE = 'TK004', HINT = 'Pass at least one canonical symbol.';
    END IF;
    SELECT array_agg(DISTINCT s.symbol ORDER BY s.symbol) INTO v_unknown
    FROM unnest(p_symbols) AS s (symbol)
    WHERE NOT EXISTS (
        SELECT FROM tickagg.core_asset_registry_all AS r WHERE r.canonical_symbol = s.symbol
    );
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown symbol: %', array_to_string(v_unknown, ', ')
            USING ERRCODE = 'TK002', HINT = '`tickagg symbols list` shows the registered symbols.';
    END IF;
    IF NOT EXISTS (SELECT FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe) THEN
        SELECT array_agg(t.timeframe ORDER BY t.sort_order) INTO v_known FROM tickagg.timeframes AS t;
        RAISE EXCEPTION 'unknown timeframe: %', coalesce(p_timeframe, 'NULL')
            USING ERRCODE = 'TK003', HINT = 'Use one of: ' || array_to_string(v_known, ', ') || '.';
    END IF;
    IF p_fill IS NULL OR p_fill NOT IN ('none', 'null', 'prev') THEN
        RAISE EXCEPTION 'unknown fill: %', coalesce(p_fill, 'NULL')
            USING ERRCODE = 'TK004', HINT = 'Use one of: none, null, prev.';
    END IF;
    IF p_indicators IS NOT NULL THEN
        IF p_timeframe = '1m' THEN
            RAISE EXCEPTION 'indicators are computed for derived timeframes, not 1m'
                USING ERRCODE = 'TK004', HINT = 'Read a derived timeframe (5m and above).';
        END IF;
        SELECT array_agg(DISTINCT k.name ORDER BY k.name) INTO v_known
        FROM tickagg.indicator_key_sets AS s
        CROSS JOIN LATERAL unnest(s.keys) AS k (name);
        SELECT array_agg(DISTINCT i.name ORDER BY i.name) INTO v_unknown
        FROM unnest(p_indicators) AS i (name)
        WHERE i.name IS NULL OR NOT i.name = ANY(coalesce(v_known, '{}'));
        IF v_unknown IS NOT NULL THEN
            RAISE EXCEPTION 'unknown indicator: %', array_to_string(v_unknown, ', ')
                USING ERRCODE = 'TK004', HINT = CASE
                    WHEN v_known IS NULL THEN 'No indicator has been computed yet: run `tickagg run`.'
                    ELSE 'Use one of: ' || array_to_string(v_known, ', ') || '.'
                END;
        END IF;
    END IF;

    -- one symbol at a time: each has its own calendar, and the plan is cached
    FOR v_symbol, v_calendar IN
        SELECT r.canonical_symbol, r.calendar_code
        FROM tickagg.core_asset_registry_all AS r
        WHERE r.canonical_symbol = ANY(p_symbols)
        ORDER BY r.canonical_symbol
    LOOP
        v_from := coalesce(p_from, '-infinity');
        -- buckets still to come are neither bars nor gaps
        v_to := least(coalesce(p_to, 'infinity'), now());
        IF p_fill <> 'none' AND p_from IS NULL THEN
            SELECT min(b.bucket) INTO v_from
            FROM tickagg.bars_of(v_symbol, p_timeframe, '-infinity', v_to) AS b;
        END IF;
        RETURN QUERY
        WITH bars AS (
            SELECT b.*
            FROM tickagg.bars_of(v_symbol, p_timeframe, v_from, v_to) AS b
            WHERE p_include_open OR b.bucket_end <= now()
        ),
        slots AS (
            SELECT c.bucket_start AS bucket, c.bucket_end
            FROM tickagg.calendar_buckets(v_calendar, p_timeframe, v_from, v_to) AS c
            WHERE
                p_fill <> 'none' AND c.expected_candles > 0 AND c.bucket_start >= v_from
                AND (p_include_open OR c.bucket_end <= now())
        ),
        merged AS (
            SELECT
                coalesce(b.bucket, s.bucket) AS bucket,
                coalesce(b.bucket_end, s.bucket_end) AS bucket_end,
                b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.source_candles,
                b.expected_candles, b.quality_score, b.is_partial,
                b.bucket IS NULL AS is_filled
            FROM bars AS b
            FULL JOIN slots AS s ON s.bucket = b.bucket
            UNION ALL
            -- the close a leading run of missing buckets continues from
            SELECT
                '-infinity', NULL, NULL, NULL, NULL, l.close, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL
            FROM (
                SELECT b.close FROM tickagg.bars_of(v_symbol, p_timeframe, '-infinity', v_from) AS b
                WHERE p_fill = 'prev'
                ORDER BY b.bucket DESC
                LIMIT 1
            ) AS l
        ),
        carried AS (
            SELECT m.*, count(m.close) OVER (ORDER BY m.bucket) AS close_no
            FROM merged AS m
        ),
        filled AS (
            SELECT
                c.*,
                CASE WHEN c.is_filled AND p_fill = 'prev'
                    THEN first_value(c.close) OVER (PARTITION BY c.close_no ORDER BY c.bucket)
                END AS flat
            FROM carried AS c
        )
        SELECT
            v_symbol, f.bucket, f.bucket_end,
            coalesce(f.open, f.flat), coalesce(f.high, f.flat), coalesce(f.low, f.flat),
            coalesce(f.close, f.flat),
            CASE WHEN f.is_filled AND p_fill = 'prev' THEN 0 ELSE f.volume END,
            f.vwap, f.trade_count, f.source_candles, f.expected_candles, f.quality_score,
            f.is_partial, f.is_filled,
            (
                SELECT jsonb_object_agg(n.name, i.indicators -> n.name)
                FROM unnest(p_indicators) AS n (name)
                -- a lookup by the whole key per bar, whatever the statistics say
                LEFT JOIN tickagg.bar_indicators AS i
                    ON i.canonical_symbol = v_symbol AND i.timeframe = p_timeframe AND i.ts_utc = f.bucket
            )
        FROM filled AS f
        WHERE f.bucket > '-infinity'
        ORDER BY f.bucket;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION tickagg.bars_read(text[], text, timestamptz, timestamptz, text[], boolean, text) IS
'Bars of some symbols in one timeframe (1m from data_bars, others materialised plus the real-time tail), ordered by symbol and bucket, with the chosen indicators as jsonb; the still-open bucket only with p_include_open; p_fill null/prev: one row per bucket of open market time, missing ones flagged is_filled.';
