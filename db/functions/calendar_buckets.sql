-- Buckets of one timeframe for the sessions overlapping [p_from, p_to), each with
-- the number of 1-minute slots it expects. Fixed steps are anchored at the session
-- open and truncated at its close; day = the session; week = the trading week.
CREATE OR REPLACE FUNCTION tickagg.calendar_buckets(
    p_calendar_code text,
    p_timeframe text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (bucket_start timestamptz, bucket_end timestamptz, expected_candles integer)
LANGUAGE sql
STABLE
PARALLEL SAFE
-- a typical call spans days, not years; keeps the planner's estimates sane
ROWS 300
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    WITH tf AS (
        SELECT t.bucket_kind, t.step FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe
    ),
    ses AS (
        SELECT s.* FROM tickagg.calendar_sessions(p_calendar_code, p_from, p_to) AS s
    ),
    pieces AS (
        SELECT
            b.bucket_start,
            least(b.bucket_start + tf.step, s.close_utc) AS bucket_end,
            s.is_trading,
            least(b.bucket_start + tf.step, s.close_utc) AS piece_end,
            b.bucket_start AS piece_start
        FROM ses AS s
        CROSS JOIN tf
        CROSS JOIN LATERAL generate_series(s.open_utc, s.close_utc - interval '1 microsecond', tf.step)
            AS b (bucket_start)
        WHERE tf.bucket_kind IN ('fixed', 'minute')
        UNION ALL
        SELECT s.open_utc, s.close_utc, s.is_trading, s.close_utc, s.open_utc
        FROM ses AS s CROSS JOIN tf
        WHERE tf.bucket_kind = 'day'
        UNION ALL
        SELECT s.week_open_utc, s.week_close_utc, s.is_trading, s.close_utc, s.open_utc
        FROM tickagg.calendar_sessions(
            p_calendar_code, p_from - interval '8 days', p_to + interval '8 days'
        ) AS s
        CROSS JOIN tf
        WHERE tf.bucket_kind = 'week'
    )
    SELECT
        p.bucket_start,
        p.bucket_end,
        coalesce(sum(extract(EPOCH FROM p.piece_end - p.piece_start)) FILTER (WHERE p.is_trading) / 60, 0)::integer
    FROM pieces AS p
    WHERE p.bucket_start < p_to AND p.bucket_end > p_from
    GROUP BY p.bucket_start, p.bucket_end
    ORDER BY p.bucket_start
$$;

COMMENT ON FUNCTION tickagg.calendar_buckets(text, text, timestamptz, timestamptz) IS
'Session-anchored buckets of a timeframe overlapping [p_from, p_to) with their expected 1-minute candles.';
