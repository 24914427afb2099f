-- Per symbol: the share of expected 1-minute bars present over the last 24 hours
-- and 7 days (whole minutes before now, open sessions of its calendar only; NULL
-- when the market was closed throughout), the oldest open ledger gap, and flags
-- for the alert thresholds of seeds/000 (settings coverage_24h_min_pct 99,
-- coverage_7d_min_pct 98, gap_max_open_age 24 hours).
CREATE OR REPLACE VIEW tickagg.coverage AS
SELECT
    r.canonical_symbol,
    r.calendar_code,
    w.expected_24h,
    w.present_24h,
    round(100.0 * w.present_24h / nullif(w.expected_24h, 0), 3) AS coverage_24h,
    w.expected_7d,
    w.present_7d,
    round(100.0 * w.present_7d / nullif(w.expected_7d, 0), 3) AS coverage_7d,
    g.open_gaps,
    g.oldest_open_gap_start,
    now() - g.oldest_open_gap_start AS oldest_gap_age,
    coalesce(100.0 * w.present_24h < tickagg.setting('coverage_24h_min_pct')::numeric * w.expected_24h, false)
        AS coverage_24h_low,
    coalesce(100.0 * w.present_7d < tickagg.setting('coverage_7d_min_pct')::numeric * w.expected_7d, false)
        AS coverage_7d_low,
    coalesce(now() - g.oldest_open_gap_start > tickagg.setting('gap_max_open_age')::interval, false)
        AS oldest_gap_too_old
FROM tickagg.core_asset_registry_all AS r
CROSS JOIN
    LATERAL (
        SELECT
            sum(x.expected) FILTER (WHERE x.window_name = '24h') AS expected_24h,
            sum(x.present) FILTER (WHERE x.window_name = '24h') AS present_24h,
            sum(x.expected) FILTER (WHERE x.window_name = '7d') AS expected_7d,
            sum(x.present) FILTER (WHERE x.window_name = '7d') AS present_7d
        FROM (VALUES ('24h', interval '24 hours'), ('7d', interval '7 days')) AS v (window_name, span)
        CROSS JOIN
            LATERAL unnest(tickagg.calendar_open_time(
                r.calendar_code, date_trunc('minute', now()) - v.span, date_trunc('minute', now())
            )) AS o (open_span)
        CROSS JOIN LATERAL (
            SELECT
                v.window_name,
                (extract(EPOCH FROM upper(o.open_span) - lower(o.open_span)) / 60)::bigint AS expected,
                (
                    SELECT count(*)
                    FROM tickagg.data_bars AS b
                    WHERE
                        b.canonical_symbol = r.canonical_symbol AND b.timeframe = '1m'
                        AND b.ts_utc >= lower(o.open_span) AND b.ts_utc < upper(o.open_span)
                ) AS present
        ) AS x
    ) AS w
CROSS JOIN LATERAL (
    SELECT count(*) AS open_gaps, min(l.gap_start) AS oldest_open_gap_start
    FROM tickagg.gap_ledger AS l
    WHERE l.canonical_symbol = r.canonical_symbol AND l.filled_at IS NULL
) AS g;
