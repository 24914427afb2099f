-- The next bar changes of one symbol for ClickHouse, ordered by change_no:
-- 1-minute bars (data_bars), their hard deletions (data_bars_tombstones) and
-- derived bars, soft-deleted ones as deletions (is_deleted). Only change
-- numbers in (p_after_change_no, p_upto] are returned; p_upto defaults to the
-- export horizon (export_horizon_advance), never beyond it, so a writer that
-- commits late cannot be skipped. Rows carry the ClickHouse version
-- (export_version); derived bars use the source and rank named by the setting
-- export_derived_source. Re-reading a range returns identical rows.
-- A derived bar carries its indicators (derived_bar_indicators as JSON text; '{}'
-- before they are computed) and is sent again when they change: its change
-- number is then the indicator row's, its version that of the newer of the two
-- writes, so the latest content wins in FINAL. A bar may appear twice in one
-- batch (bar and indicator change); both rows are identical.
CREATE OR REPLACE FUNCTION tickagg.export_batch(
    p_canonical_symbol text,
    p_after_change_no bigint,
    p_limit integer DEFAULT 50000,
    p_upto bigint DEFAULT NULL
)
RETURNS TABLE (
    change_no bigint,
    timeframe text,
    ts_utc timestamptz,
    open double precision,
    high double precision,
    low double precision,
    close double precision,
    volume double precision,
    vwap double precision,
    trade_count bigint,
    source text,
    quality_score smallint,
    source_candles integer,
    expected_candles integer,
    is_partial boolean,
    is_deleted boolean,
    version bigint,
    indicators text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_upto bigint := least(
        coalesce(p_upto, 9223372036854775807),
        (SELECT h.safe_change_no FROM tickagg.export_horizon AS h WHERE h.singleton)
    );
    v_derived_source text := tickagg.setting('export_derived_source');
    v_derived_rank integer := coalesce(
        (SELECT s.source_rank FROM tickagg.bar_sources AS s WHERE s.source = v_derived_source), 0
    );
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'export batch limit must be positive, got %', p_limit USING ERRCODE = 'TK004';
    END IF;
    RETURN QUERY
    SELECT u.* FROM (
        (
            SELECT
                d.change_no, '1m'::text, d.ts_utc, d.open, d.high, d.low, d.close, d.volume, d.vwap,
                d.trade_count, d.source, 2::smallint, 1, 1, false, false,
                tickagg.export_version(d.source_rank, d.change_no, t.version, t.change_no), '{}'::text
            FROM tickagg.data_bars AS d
            LEFT JOIN tickagg.data_bars_tombstones AS t
                ON t.canonical_symbol = d.canonical_symbol AND t.ts_utc = d.ts_utc AND t.change_no < d.change_no
            WHERE d.canonical_symbol = p_canonical_symbol AND d.change_no > p_after_change_no AND d.change_no <= v_upto
            ORDER BY d.change_no
            LIMIT p_limit
        )
        UNION ALL
        (
            SELECT
                t.change_no, '1m'::text, t.ts_utc, 0::float8, 0::float8, 0::float8, 0::float8, 0::float8,
                NULL::float8, NULL::bigint, 'deleted'::text, 0::smallint, 0, 0, false, true, t.version, '{}'::text
            FROM tickagg.data_bars_tombstones AS t
            WHERE t.canonical_symbol = p_canonical_symbol AND t.change_no > p_after_change_no AND t.change_no <= v_upto
            ORDER BY t.change_no
            LIMIT p_limit
        )
        UNION ALL
        (
            SELECT
                b.change_no, b.timeframe, b.ts_utc, b.open, b.high, b.low, b.close, b.volume, b.vwap,
                b.trade_count, v_derived_source, b.quality_score, b.source_candles, b.expected_candles,
                b.is_partial, b.deleted_at IS NOT NULL,
                tickagg.export_version(v_derived_rank, greatest(b.change_no, i.change_no)),
                coalesce(tickagg.indicators_json(i.key_set_id, i.vals)::text, '{}')
            FROM tickagg.derived_data_bars AS b
            LEFT JOIN tickagg.derived_bar_indicators AS i
                ON i.canonical_symbol = b.canonical_symbol AND i.timeframe = b.timeframe AND i.ts_utc = b.ts_utc
            WHERE b.canonical_symbol = p_canonical_symbol AND b.change_no > p_after_change_no AND b.change_no <= v_upto
            ORDER BY b.change_no
            LIMIT p_limit
        )
        UNION ALL
        (
            SELECT
                i.change_no, b.timeframe, b.ts_utc, b.open, b.high, b.low, b.close, b.volume, b.vwap,
                b.trade_count, v_derived_source, b.quality_score, b.source_candles, b.expected_candles,
                b.is_partial, b.deleted_at IS NOT NULL,
                tickagg.export_version(v_derived_rank, greatest(b.change_no, i.change_no)),
                tickagg.indicators_json(i.key_set_id, i.vals)::text
            FROM tickagg.derived_bar_indicators AS i
            INNER JOIN tickagg.derived_data_bars AS b
                ON b.canonical_symbol = i.canonical_symbol AND b.timeframe = i.timeframe AND b.ts_utc = i.ts_utc
            WHERE i.canonical_symbol = p_canonical_symbol AND i.change_no > p_after_change_no AND i.change_no <= v_upto
            ORDER BY i.change_no
            LIMIT p_limit
        )
    ) AS u
    ORDER BY u.change_no
    LIMIT p_limit;
END
$$;

COMMENT ON FUNCTION tickagg.export_batch(text, bigint, integer, bigint) IS
'Next bar changes of a symbol for ClickHouse (bars, tombstones, derived bars incl. deletions and indicator changes) up to the export horizon, by change_no.';
