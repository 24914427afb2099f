-- Text to double precision, NULL when it is not a plain decimal number (which
-- also keeps NaN and Infinity spellings out), without raising. The length cap
-- keeps the cast from overflowing.
CREATE OR REPLACE FUNCTION tickagg.parse_float8(p_text text)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN length(p_text) <= 40 AND p_text ~ '^ *[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,2})? *$'
            THEN p_text::double precision
    END
$$;

COMMENT ON FUNCTION tickagg.parse_float8(text) IS
'Parse a decimal number; NULL for anything else, including NaN and Infinity.';
