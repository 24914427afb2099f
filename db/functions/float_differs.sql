-- Whether two sums differ by more than rounding: a recompute may add the same
-- minutes in another order (another plan), and a last-bit difference must not
-- count as a revision, which would dirty every level above and re-export.
CREATE OR REPLACE FUNCTION tickagg.float_differs(p_a double precision, p_b double precision)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_a IS DISTINCT FROM p_b
        AND (p_a IS NULL OR p_b IS NULL OR abs(p_a - p_b) > 1e-12 * greatest(abs(p_a), abs(p_b)))
$$;

COMMENT ON FUNCTION tickagg.float_differs(double precision, double precision) IS
'True when two floating-point aggregates differ by more than a relative 1e-12 (summation-order noise).';
