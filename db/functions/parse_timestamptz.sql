-- Text to timestamptz, NULL when it does not parse (or names a second 60 or an
-- hour 24), so one bad row cannot abort a whole ingest. Text without an offset is read as UTC. No SET clause: it runs
-- once per ingested row and must stay cheap.
CREATE OR REPLACE FUNCTION tickagg.parse_timestamptz(p_text text)
RETURNS timestamptz
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_text IS NULL OR p_text !~ '^\s*\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?\s*(Z|z|UTC|[+-]\d{2}(:?\d{2})?)?\s*$' THEN
        RETURN NULL;
    END IF;
    -- PostgreSQL reads a second 60 and an hour 24 as the next minute or day: a leap
    -- second, or a mistake, would take the place of the real next minute's row
    IF p_text ~ '[ T](24|\d{2}:\d{2}:60)' THEN
        RETURN NULL;
    END IF;
    IF p_text ~ '(Z|z|UTC|[+-]\d{2}(:?\d{2})?)\s*$' THEN
        RETURN p_text::timestamptz;
    END IF;
    RETURN p_text::timestamp AT TIME ZONE 'UTC';
EXCEPTION
    WHEN datetime_field_overflow OR invalid_datetime_format THEN
        RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.parse_timestamptz(text) IS
'Parse an ISO 8601 timestamp (UTC when it has no offset); NULL instead of an error when it is not one.';
