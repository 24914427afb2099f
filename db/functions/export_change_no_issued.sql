-- The highest change_no handed out so far (0 before the first). A one-shot
-- export reads it when it starts and does not stop before the export horizon
-- has passed it, so it includes every change committed before it began even
-- while some unrelated transaction holds the horizon back for a moment.
CREATE OR REPLACE FUNCTION tickagg.export_change_no_issued()
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM tickagg.bar_change_seq AS s
$$;

COMMENT ON FUNCTION tickagg.export_change_no_issued() IS
'Highest change_no handed out so far (0 before the first): the target of a one-shot export.';
