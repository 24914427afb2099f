-- The export cursor (last change_no handed to ClickHouse) of a symbol's export
-- task; NULL when the symbol has none.
CREATE OR REPLACE FUNCTION tickagg.export_cursor(p_canonical_symbol text)
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
    SELECT s.export_change_no FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = 'export'
$$;

COMMENT ON FUNCTION tickagg.export_cursor(text) IS
'Last change_no exported to ClickHouse for a symbol (NULL without an export task).';
