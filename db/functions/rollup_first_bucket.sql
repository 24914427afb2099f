-- The first bucket a rollup task materialises: its agg_start_utc when that is a
-- bucket boundary (one bucket lookup), else the next boundary after it.
CREATE OR REPLACE FUNCTION tickagg.rollup_first_bucket(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_agg_start timestamptz
)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT CASE
        WHEN lower(tickagg.bucket_bounds(p_calendar_code, p_timeframe, p_agg_start)) = p_agg_start
            THEN p_agg_start
        ELSE tickagg.agg_bootstrap_cursor(p_canonical_symbol, p_timeframe, p_agg_start)
    END
$$;

COMMENT ON FUNCTION tickagg.rollup_first_bucket(text, text, text, timestamptz) IS
'First bucket boundary at or after a rollup task''s agg_start_utc; nothing before it is materialised.';
