-- Statement trigger on ingest_batches: deleted or truncated batches take their
-- rejects with them, as the foreign key did before 0021 (a check per rejected
-- row was too dear; ingest_staged_bars locks its batch row once per chunk
-- instead). SECURITY DEFINER like the cascade it replaces: whoever may delete a
-- batch need not hold rights on ingest_rejects.
CREATE OR REPLACE FUNCTION tickagg.ingest_batches_deleted()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    IF tg_op = 'TRUNCATE' THEN
        TRUNCATE tickagg.ingest_rejects;
    ELSE
        DELETE FROM tickagg.ingest_rejects AS r
        USING deleted_batches AS d
        WHERE r.batch_id = d.batch_id;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.ingest_batches_deleted() IS
'Delete the rejects of deleted or truncated ingest batches (in place of a per-row foreign key).';
