-- Whether ranges are "a few buckets" of a timeframe's step: their hull spans at
-- most 16 steps. A late minute or a live bucket is; a backfill or a catch-up is
-- not. The late-data cascade runs for a few buckets only, and rollup_ranges plans
-- them generically. One expression, so it is inlined where it is used.
CREATE OR REPLACE FUNCTION tickagg.few_buckets(p_ranges tstzmultirange, p_step interval)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT coalesce(upper(p_ranges) - lower(p_ranges), interval '0') <= p_step * 16
$$;

COMMENT ON FUNCTION tickagg.few_buckets(tstzmultirange, interval) IS
'True when the ranges'' hull spans at most 16 steps: a late bucket or two, not a backfill.';
