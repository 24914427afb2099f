-- Text to double precision, NULL when it is not a plain decimal number (which
-- also keeps NaN and Infinity spellings out) or is out of float8's range, without
-- raising. With the length cap an exponent of up to 2 digits cannot overflow; one
-- of 3 digits (1e308) is checked as numeric.
CREATE OR REPLACE FUNCTION tickagg.parse_float8(p_text text)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN length(p_text) <= 40 AND p_text ~ '^ *[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,2})? *$'
            THEN p_text::double precision
        -- a 3-digit exponent may leave float8's range: judged as numeric first
        WHEN
            length(p_text) <= 40 AND p_text ~ '^ *[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]{3} *$'
            AND (
                -- (what rounds to float8's largest and smallest non-zero magnitudes)
                abs(p_text::numeric) < 1.797693134862315807937289714053e308
                AND (p_text::numeric = 0 OR abs(p_text::numeric) > 2.4703282292062327209e-324)
            )
            THEN p_text::double precision
    END
$$;

COMMENT ON FUNCTION tickagg.parse_float8(text) IS
'Parse a decimal number; NULL for anything else, including NaN and Infinity.';
