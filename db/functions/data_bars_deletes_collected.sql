-- Whether data_bars' deletes go through data_bars_deleted (data_bars_collect_deleted,
-- installed by `migrate --timescaledb --compress-after`): then the DELETE triggers
-- with transition tables that a compressed hypertable refuses must not be created.
CREATE OR REPLACE FUNCTION tickagg.data_bars_deletes_collected()
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_trigger AS t
        WHERE t.tgrelid = 'tickagg.data_bars'::regclass AND t.tgname = 'data_bars_collect_deleted'
    )
$$;

COMMENT ON FUNCTION tickagg.data_bars_deletes_collected() IS
'True where migrate --timescaledb routes data_bars deletes through data_bars_deleted (compressed hypertable).';
