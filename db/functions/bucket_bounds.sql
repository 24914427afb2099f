-- The bucket of a timeframe containing p_ts, or NULL when p_ts lies outside
-- every session (for example overnight on an equity calendar).
CREATE OR REPLACE FUNCTION tickagg.bucket_bounds(
    p_calendar_code text,
    p_timeframe text,
    p_ts timestamptz
)
RETURNS tstzrange
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT tstzrange(b.bucket_start, b.bucket_end)
    FROM tickagg.calendar_buckets(p_calendar_code, p_timeframe, p_ts, p_ts + interval '1 microsecond') AS b
    WHERE b.bucket_start <= p_ts AND p_ts < b.bucket_end
$$;

COMMENT ON FUNCTION tickagg.bucket_bounds(text, text, timestamptz) IS
'The [start, end) of the bucket containing p_ts for a calendar and timeframe, NULL outside sessions.';
