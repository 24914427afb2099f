-- The total length of a multirange's ranges (zero when empty). Late-data paths
-- compare it with a timeframe's step to tell a few buckets from a backfill.
CREATE OR REPLACE FUNCTION tickagg.range_width(p_ranges tstzmultirange)
RETURNS interval
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT coalesce(sum(upper(r.span) - lower(r.span)), interval '0')
    FROM unnest(p_ranges) AS r (span)
$$;

COMMENT ON FUNCTION tickagg.range_width(tstzmultirange) IS
'Total length of the ranges of a multirange (0 when empty).';
