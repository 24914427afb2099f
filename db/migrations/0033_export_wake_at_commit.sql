-- Export wake-ups queued by a write until it commits (export_wake): the deferred
-- trigger in db/post/020_export_triggers.sql makes the export tasks due then.
CREATE TABLE tickagg.export_wakes_pending (
    wake_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical_symbols text[] NOT NULL
);
