-- The text value of a setting from tickagg.settings; callers cast it. No SET
-- clause, so it inlines where a query uses it per row.
CREATE OR REPLACE FUNCTION tickagg.setting(p_setting_key text)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT s.setting_value FROM tickagg.settings AS s WHERE s.setting_key = p_setting_key
$$;

COMMENT ON FUNCTION tickagg.setting(text) IS 'The value of a tickagg setting, as text.';
