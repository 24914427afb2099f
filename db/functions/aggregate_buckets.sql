-- The bars of one timeframe for the buckets starting in p_ranges, aggregated from
-- p_source_timeframe (its rollup source, or '1m' for the real-time views), with
-- expected candles and quality. Pure SQL so the planner inlines it. The ranges
-- must start and end on bucket boundaries or in closed market time.
--
-- The source is read once per run of sessions, not once per session: a fixed-step
-- run is a stretch of back-to-back sessions whose opens lie on one bucket grid
-- (forex: all of it for 5m to 1h), so one index range covers months and the
-- bucket is date_bin from the run's first open. Per-session ranges revisit the
-- same heap pages once per session when a symbol's minutes are spread over the
-- table (interleaved ingest), which cost 5x the reading itself. A 1d run is one
-- session; a 1w run is the sessions of one trading week. Bucket end and expected
-- candles come from the run, so no bucket list is generated or joined.
CREATE OR REPLACE FUNCTION tickagg.aggregate_buckets(
    p_canonical_symbol text,
    p_timeframe text,
    p_source_timeframe text,
    p_ranges tstzmultirange
)
RETURNS TABLE (
    bucket_start timestamptz,
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
    is_partial boolean
)
LANGUAGE sql
STABLE
AS $$
    WITH target AS (
        SELECT
            t.bucket_kind IN ('fixed', 'minute') AS is_fixed,
            t.bucket_kind = 'week' AS is_week,
            t.step,
            t.usable_quality_pct,
            r.calendar_code
        FROM tickagg.timeframes AS t
        CROSS JOIN tickagg.core_asset_registry_all AS r
        WHERE t.timeframe = p_timeframe AND r.canonical_symbol = p_canonical_symbol
    ),
    -- Sessions overlapping each range; for 1w also the rest of their weeks, whose
    -- trading minutes the week expects.
    sessions AS (
        SELECT
            r.span,
            s.open_utc,
            s.close_utc,
            s.is_trading,
            s.week_open_utc,
            s.week_close_utc,
            greatest(s.open_utc, lower(r.span)) AS span_from,
            least(s.close_utc, upper(r.span)) AS span_to,
            CASE
                -- a fixed-step run goes on while each session opens where the
                -- previous one closed and on its bucket grid
                WHEN tg.is_fixed THEN coalesce(
                    lag(s.close_utc) OVER w <> s.open_utc
                    OR date_bin(tg.step, s.open_utc, lag(s.open_utc) OVER w) <> s.open_utc,
                    true
                )
                WHEN tg.is_week THEN coalesce(lag(s.week_open_utc) OVER w <> s.week_open_utc, true)
                ELSE true
            END AS starts_run
        FROM target AS tg
        CROSS JOIN unnest(p_ranges) AS r (span)
        CROSS JOIN LATERAL tickagg.calendar_sessions(
            tg.calendar_code,
            lower(r.span) - CASE WHEN tg.is_week THEN interval '8 days' ELSE interval '0 days' END,
            upper(r.span) + CASE WHEN tg.is_week THEN interval '8 days' ELSE interval '0 days' END
        ) AS s
        WINDOW w AS (PARTITION BY r.span ORDER BY s.open_utc)
    ),
    numbered AS (
        SELECT
            s.*,
            count(*) FILTER (WHERE s.starts_run) OVER (PARTITION BY s.span ORDER BY s.open_utc) AS run_no
        FROM sessions AS s
    ),
    runs AS MATERIALIZED (
        SELECT
            n.span,
            CASE WHEN tg.is_week THEN min(n.week_open_utc) ELSE min(n.open_utc) END AS origin,
            CASE WHEN tg.is_week THEN min(n.week_close_utc) ELSE max(n.close_utc) END AS run_close,
            -- what to read: the run's sessions inside the range (adjacent ones merge,
            -- so only a week of separate sessions has more than one part)
            range_agg(tstzrange(n.span_from, n.span_to)) FILTER (WHERE n.span_from < n.span_to) AS scan,
            coalesce(
                range_agg(tstzrange(n.open_utc, n.close_utc)) FILTER (WHERE NOT n.is_trading),
                '{}'::tstzmultirange
            ) AS closed,
            coalesce(
                sum(extract(EPOCH FROM n.close_utc - n.open_utc)) FILTER (WHERE n.is_trading) / 60, 0
            )::integer AS trading_minutes
        FROM numbered AS n
        CROSS JOIN target AS tg
        GROUP BY n.span, n.run_no, tg.is_week
    ),
    aggregated AS (
        SELECT
            ru.span,
            ru.run_close,
            ru.closed,
            ru.trading_minutes,
            a.*
        FROM target AS tg
        CROSS JOIN (
            -- hull and wholeness once per run (OFFSET 0): flattened into the scan
            -- below, they were computed again for every source bar
            SELECT
                r.*,
                range_merge(r.scan) AS hull,
                r.scan = tstzmultirange(range_merge(r.scan)) AS is_whole
            FROM runs AS r
            WHERE r.scan IS NOT NULL
            OFFSET 0
        ) AS ru
        CROSS JOIN LATERAL (
            SELECT
                s.bucket_start,
                -- The source bars reach each group in time order (the subquery's
                -- ORDER BY, which the index scan already satisfies, so its sort only
                -- checks), so open and close are the first and last element. As the
                -- min/max of [epoch, price] arrays they cost a third of a 5m catch-up.
                (array_agg(s.open))[1] AS open,
                max(s.high) AS high,
                min(s.low) AS low,
                (array_agg(s.close))[count(*)] AS close,
                sum(s.volume) AS volume,
                -- bars without volume carry no weight, so their missing vwap does not matter
                CASE
                    WHEN count(*) FILTER (WHERE s.vwap IS NULL AND s.volume > 0) = 0 AND sum(s.volume) > 0
                        THEN sum(s.vwap * s.volume) / sum(s.volume)
                END AS vwap,
                sum(s.trade_count)::bigint AS trade_count,
                sum(s.source_candles)::integer AS source_candles
            FROM (
                SELECT
                    CASE WHEN tg.is_fixed THEN date_bin(tg.step, b.ts_utc, ru.origin) ELSE ru.origin END
                        AS bucket_start,
                    b.*
                -- one index range scan per run, whatever the statistics say
                -- (OFFSET 0 keeps the planner from flattening it into a worse join)
                FROM (
                    SELECT src.*
                    FROM tickagg.rollup_source_bars AS src
                    WHERE
                        src.canonical_symbol = p_canonical_symbol
                        AND src.timeframe = p_source_timeframe
                        AND src.ts_utc >= lower(ru.hull)
                        AND src.ts_utc < upper(ru.hull)
                    OFFSET 0
                ) AS b
                -- between the sessions of a week lie bars that no session rolls up
                WHERE ru.is_whole OR b.ts_utc <@ ru.scan
                ORDER BY 1, b.ts_utc
            ) AS s
            GROUP BY s.bucket_start
        ) AS a
    )
    SELECT
        a.bucket_start,
        e.bucket_end,
        a.open,
        a.high,
        a.low,
        a.close,
        a.volume,
        a.vwap,
        a.trade_count,
        a.source_candles,
        e.expected_candles,
        (CASE
            WHEN a.source_candles >= e.expected_candles THEN 2
            WHEN a.source_candles * 100 >= e.expected_candles * tg.usable_quality_pct THEN 1
            ELSE 0
        END)::smallint,
        a.source_candles < e.expected_candles
    FROM aggregated AS a
    CROSS JOIN target AS tg
    -- inside a fixed-step run only the last session's close can cut a bucket short,
    -- and a bucket lies in one session: it expects its minutes unless that is closed
    CROSS JOIN LATERAL (
        SELECT
            f.bucket_end,
            CASE
                WHEN tg.is_week THEN a.trading_minutes
                WHEN a.bucket_start <@ a.closed THEN 0
                ELSE (extract(EPOCH FROM f.bucket_end - a.bucket_start) / 60)::integer
            END AS expected_candles
        FROM (
            SELECT CASE WHEN tg.is_fixed THEN least(a.bucket_start + tg.step, a.run_close) ELSE a.run_close END
        ) AS f (bucket_end)
    ) AS e
    WHERE a.bucket_start >= lower(a.span) AND a.bucket_start < upper(a.span)
$$;

COMMENT ON FUNCTION tickagg.aggregate_buckets(text, text, text, tstzmultirange) IS
'Bars of a timeframe for the buckets starting in p_ranges, aggregated from a source timeframe, with expected candles and quality.';
