-- Ledger of applied ClickHouse DDL files (written by `tickagg migrate`).
CREATE TABLE IF NOT EXISTS tickagg_schema_files
(
    path String,
    sha256 String,
    applied_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY path;
