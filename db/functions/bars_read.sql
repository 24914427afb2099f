-- The bars of some symbols in one timeframe as readers want them: 1-minute bars
-- from data_bars, every other timeframe through the ohlcv view (materialised plus
-- the real-time tail, so the newest minute counts), in (symbol, bucket) order,
-- with the chosen indicators as one jsonb object per bar. One definition for
-- `tickagg bars`, tickagg.read_bars() and anyone in SQL. SECURITY DEFINER so a
-- reading role needs no table privileges; jit off because a one-day read costs
-- more to compile than to run.
CREATE OR REPLACE FUNCTION tickagg.bars_read(
    p_symbols text[],
    p_timeframe text,
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_indicators text[] DEFAULT NULL,
    p_include_open boolean DEFAULT false
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

    IF p_timeframe = '1m' THEN
        RETURN QUERY
        SELECT
            m.canonical_symbol, m.ts_utc, m.ts_utc + interval '1 minute', m.open, m.high, m.low,
            m.close, m.volume, m.vwap, m.trade_count, 1, 1, 100::smallint, false, NULL::jsonb
        FROM tickagg.data_bars AS m
        WHERE
            m.canonical_symbol = ANY(p_symbols) AND m.timeframe = '1m'
            AND m.ts_utc >= coalesce(p_from, '-infinity') AND m.ts_utc < coalesce(p_to, 'infinity')
        ORDER BY m.canonical_symbol, m.ts_utc;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT
        r.canonical_symbol, r.bucket, r.bucket_end, r.open, r.high, r.low, r.close, r.volume, r.vwap,
        r.trade_count, r.source_candles, r.expected_candles, r.quality_score, r.is_partial,
        (
            SELECT jsonb_object_agg(n.name, i.indicators -> n.name)
            FROM unnest(p_indicators) AS n (name)
        )
    FROM tickagg.ohlcv AS r
    LEFT JOIN tickagg.bar_indicators AS i
        ON
            p_indicators IS NOT NULL
            AND i.canonical_symbol = r.canonical_symbol
            AND i.timeframe = p_timeframe
            AND i.ts_utc = r.bucket
    WHERE
        r.canonical_symbol = ANY(p_symbols) AND r.timeframe = p_timeframe
        AND r.bucket >= coalesce(p_from, '-infinity') AND r.bucket < coalesce(p_to, 'infinity')
        AND (p_include_open OR r.bucket_end <= now())
    ORDER BY r.canonical_symbol, r.bucket;
END;
$$;

COMMENT ON FUNCTION tickagg.bars_read(text[], text, timestamptz, timestamptz, text[], boolean) IS
'Bars of some symbols in one timeframe (1m from data_bars, others materialised plus the real-time tail), ordered by symbol and bucket, with the chosen indicators as jsonb; the still-open bucket only with p_include_open.';
