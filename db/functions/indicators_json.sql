-- The indicators of one bar as the jsonb object users and ClickHouse read
-- ({"rsi": 48.2, "sma_200": null, ...}): the stored array with the names of its
-- key set. Kept out of the table because building jsonb per bar cost the
-- indicators task more than computing the values.
CREATE OR REPLACE FUNCTION tickagg.indicators_json(p_key_set_id integer, p_vals double precision[])
RETURNS jsonb
LANGUAGE sql
STABLE
-- the view's readers need not read the key sets themselves
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
-- shortest exact float text whatever the reader's session says, so the JSON
-- numbers read back as the same doubles
SET extra_float_digits = 1
AS $$
    SELECT jsonb_object_agg(u.k, u.v)
    FROM tickagg.indicator_key_sets AS s
    CROSS JOIN LATERAL unnest(s.keys, p_vals) AS u (k, v)
    WHERE s.key_set_id = p_key_set_id
$$;

COMMENT ON FUNCTION tickagg.indicators_json(integer, double precision[]) IS
'The jsonb object of one bar''s indicators: the names of its key set paired with its stored values.';
