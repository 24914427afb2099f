-- Runs of missing bars of a derived timeframe: buckets of the calendar that
-- start in [p_from, p_to), expect at least one candle and have no live bar in
-- derived_data_bars, or a bar holding less than the timeframe's completeness_pct
-- of its expected candles (100% intraday, 80% for 1d and 1w by default).
-- Consecutive such buckets with no closed time between them form one run;
-- missing_candles counts buckets. Only buckets before the rollup task's cursor
-- are judged: later ones are not materialised yet (the ohlcv_* views show them).
CREATE OR REPLACE FUNCTION tickagg.bucket_gaps(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (gap_start timestamptz, gap_end timestamptz, missing_candles bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
    WITH task AS (
        SELECT s.last_agg_bar_ts_utc AS cursor_ts, t.completeness_pct
        FROM tickagg.data_agg_state AS s
        INNER JOIN tickagg.timeframes AS t ON t.timeframe = s.timeframe
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = 'rollup'
    ),
    buckets AS (
        SELECT
            b.bucket_start,
            b.bucket_end,
            d.ts_utc IS NULL OR d.source_candles * 100 < b.expected_candles * tk.completeness_pct AS missing
        FROM task AS tk
        CROSS JOIN LATERAL tickagg.calendar_buckets(
            p_calendar_code, p_timeframe, p_from, least(p_to, tk.cursor_ts)
        ) AS b
        LEFT JOIN tickagg.derived_data_bars AS d
            ON
                d.canonical_symbol = p_canonical_symbol
                AND d.timeframe = p_timeframe
                AND d.ts_utc = b.bucket_start
                AND d.deleted_at IS NULL
        WHERE
            b.expected_candles > 0
            AND b.bucket_start >= p_from
            AND b.bucket_start < least(p_to, tk.cursor_ts)
    ),
    flagged AS (
        SELECT
            bk.bucket_start,
            bk.bucket_end,
            bk.missing,
            -- a run starts at a missing bucket whose predecessor is present or not adjacent
            CASE
                WHEN
                    bk.missing
                    AND (
                        lag(bk.missing) OVER w IS DISTINCT FROM true
                        OR lag(bk.bucket_end) OVER w <> bk.bucket_start
                    )
                    THEN 1
                ELSE 0
            END AS run_head
        FROM buckets AS bk
        WINDOW w AS (ORDER BY bk.bucket_start)
    ),
    numbered AS (
        SELECT f.bucket_start, f.bucket_end, f.missing, sum(f.run_head) OVER (ORDER BY f.bucket_start) AS run_no
        FROM flagged AS f
    )
    SELECT min(n.bucket_start), max(n.bucket_end), count(*)
    FROM numbered AS n
    WHERE n.missing
    GROUP BY n.run_no
    ORDER BY 1
$$;

COMMENT ON FUNCTION tickagg.bucket_gaps(text, text, text, timestamptz, timestamptz) IS
'Runs of missing or incomplete bars of a derived timeframe (before its task cursor); see agg_find_gaps.';
