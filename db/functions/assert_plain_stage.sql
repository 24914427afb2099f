-- The ingest functions are SECURITY DEFINER and read (the tick ingest also
-- writes) a temp stage table the caller created. Anything attached to it that
-- runs code -- a view in its place, triggers, rules, row security, an index,
-- a default, a constraint, a child table, a column of a type the caller made
-- (with its own casts) -- would run with the owner's rights. So a stage must be
-- a plain temp table of built-in types; anything else is refused.
CREATE OR REPLACE FUNCTION tickagg.assert_plain_stage(p_stage_name text)
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_stage pg_catalog.pg_class%ROWTYPE;
BEGIN
    SELECT * INTO v_stage
    FROM pg_catalog.pg_class AS c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = p_stage_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no stage table pg_temp.% in this session', p_stage_name
            USING ERRCODE = 'TK004', HINT = 'Create the stage in the same transaction (runner/queries.py has its DDL).';
    END IF;
    IF v_stage.relkind <> 'r'
        OR v_stage.relhasrules OR v_stage.relrowsecurity OR v_stage.relhastriggers
        OR v_stage.relhasindex OR v_stage.relhassubclass
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef AS d WHERE d.adrelid = v_stage.oid)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = v_stage.oid)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits AS i WHERE i.inhrelid = v_stage.oid)
        OR EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute AS a
            WHERE
                a.attrelid = v_stage.oid AND a.attnum > 0 AND NOT a.attisdropped
                -- FirstNormalObjectId: types below it come with the server
                AND a.atttypid >= 16384
        )
    THEN
        RAISE EXCEPTION 'stage pg_temp.% is not a plain temp table of built-in types', p_stage_name
            USING ERRCODE = 'TK004',
                  HINT = 'Create it with the DDL in runner/queries.py: no triggers, rules, policies, indexes, defaults, constraints or custom types.';
    END IF;
END
$$;

COMMENT ON FUNCTION tickagg.assert_plain_stage(text) IS
'Refuse a caller''s stage table that could run code with a SECURITY DEFINER ingest function''s rights.';
