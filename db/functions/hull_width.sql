-- From the first range's start to the last range's end of a multirange (zero
-- when empty). Late-data paths compare it with a timeframe's step to tell a few
-- buckets from a backfill. One expression, so it is inlined where it is used.
CREATE OR REPLACE FUNCTION tickagg.hull_width(p_ranges tstzmultirange)
RETURNS interval
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT coalesce(upper(p_ranges) - lower(p_ranges), interval '0')
$$;

COMMENT ON FUNCTION tickagg.hull_width(tstzmultirange) IS
'Width of the hull of a multirange: last range''s end minus first range''s start (0 when empty).';
