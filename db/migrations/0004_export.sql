-- ClickHouse export (issue 6): the export cursor, tombstones for hard-deleted
-- 1-minute bars, the global safe horizon of bar_change_seq and the indexes the
-- exporter reads through. Behaviour lives in db/functions (export_*).

-- The export task's cursor: the last change_no it handed to ClickHouse.
-- (last_agg_bar_ts_utc of an export task records when it last succeeded.)
ALTER TABLE tickagg.data_agg_state
ADD COLUMN export_change_no bigint NOT NULL DEFAULT 0 CHECK (export_change_no >= 0);

-- One row per (symbol, minute) whose data_bars row was hard-deleted: the
-- deletion's change_no and the ClickHouse version of the tombstone (one more
-- than the deleted row's version). A later write of that minute exports a version
-- above it (see export_version_1m), so the re-inserted bar wins in FINAL.
CREATE TABLE tickagg.data_bars_tombstones (
    canonical_symbol text NOT NULL,
    ts_utc timestamptz NOT NULL,
    change_no bigint NOT NULL,
    version bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (canonical_symbol, ts_utc)
);

CREATE INDEX idx_data_bars_tombstones_change ON tickagg.data_bars_tombstones (canonical_symbol, change_no);

CREATE INDEX idx_data_bars_change ON tickagg.data_bars (canonical_symbol, change_no);

CREATE INDEX idx_derived_data_bars_change ON tickagg.derived_data_bars (canonical_symbol, change_no);

-- Every change_no <= safe_change_no belongs to a transaction that has ended, so
-- exporting up to it can never skip a row that commits later. pending_* is the
-- candidate: the sequence's last value and the virtual transaction ids running
-- when it was read; it becomes safe once all of them have ended.
CREATE TABLE tickagg.export_horizon (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    safe_change_no bigint NOT NULL DEFAULT 0,
    pending_change_no bigint,
    pending_vxids text[],
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO tickagg.export_horizon (singleton) VALUES (true);

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
('export_batch_size', '50000', 'bar changes one export run sends to ClickHouse'),
('export_interval', '1 minute', 'run_interval of new export tasks'),
('export_priority', '300', 'task_priority of new export tasks (rollups default to 100)'),
(
    'export_derived_source', 'historical_aggregated',
    'ClickHouse source (and rank, from bar_sources) of bars tickagg derives (5m..1w)'
);
