-- The one definition of a valid 1-minute bar: why it is invalid, or NULL.
-- p_future_tolerance: the future_tolerance setting, which a caller judging many
-- rows passes once (read per row, the setting cost more than every other check).
CREATE OR REPLACE FUNCTION tickagg.bar_rejection_reason(
    p_ts_utc timestamptz,
    p_open double precision,
    p_high double precision,
    p_low double precision,
    p_close double precision,
    p_volume double precision,
    p_vwap double precision DEFAULT NULL,
    p_trade_count bigint DEFAULT NULL,
    p_now timestamptz DEFAULT now(),
    p_future_tolerance interval DEFAULT NULL
)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN p_ts_utc IS NULL THEN 'ts_utc is missing'
        WHEN date_trunc('minute', p_ts_utc) <> p_ts_utc THEN 'ts_utc is not on a whole minute'
        WHEN p_ts_utc > p_now + coalesce(p_future_tolerance, tickagg.setting('future_tolerance')::interval)
            THEN 'ts_utc is in the future'
        WHEN p_open IS NULL OR p_high IS NULL OR p_low IS NULL OR p_close IS NULL THEN 'a price is missing'
        WHEN 'NaN' IN (p_open, p_high, p_low, p_close) THEN 'a price is NaN'
        WHEN greatest(p_open, p_high, p_low, p_close) = 'Infinity'
            OR least(p_open, p_high, p_low, p_close) = '-Infinity' THEN 'a price is infinite'
        WHEN least(p_open, p_high, p_low, p_close) <= 0 THEN 'a price is zero or negative'
        WHEN p_high < p_low THEN 'high is below low'
        WHEN p_open NOT BETWEEN p_low AND p_high THEN 'open is outside [low, high]'
        WHEN p_close NOT BETWEEN p_low AND p_high THEN 'close is outside [low, high]'
        WHEN p_volume IS NULL THEN 'volume is missing'
        WHEN p_volume = 'NaN' OR p_volume = 'Infinity' THEN 'volume is not finite'
        WHEN p_volume < 0 THEN 'volume is negative'
        WHEN p_vwap NOT BETWEEN p_low AND p_high THEN 'vwap is outside [low, high]'
        WHEN p_trade_count < 0 THEN 'trade_count is negative'
    END
$$;

COMMENT ON FUNCTION tickagg.bar_rejection_reason(
    timestamptz, double precision, double precision, double precision, double precision, double precision,
    double precision, bigint, timestamptz, interval
) IS 'Why a 1-minute bar is invalid (NULL when valid): the single definition ingest and producers use.';
