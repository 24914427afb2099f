-- Issue 23 item 15: TimescaleDB refuses DELETE triggers with transition tables on
-- a compressed hypertable (deleting a whole compressed batch would bypass the
-- transition table). Where `migrate --timescaledb --compress-after` made data_bars
-- such a hypertable, a row trigger copies each deleted minute here and a statement
-- trigger deletes them again in the same statement: this table's own DELETE
-- transition table then feeds the unchanged invalidation and tombstone functions.
-- Rows live for one statement only, so the table needs no WAL (UNLOGGED); the
-- columns are the ones those functions read.
CREATE UNLOGGED TABLE tickagg.data_bars_deleted (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    ts_utc timestamptz NOT NULL,
    source_rank integer NOT NULL,
    change_no bigint NOT NULL
);
