-- Undo 0005: operator disables become ordinary disables (sync may re-enable them).
ALTER TABLE tickagg.data_agg_state DROP COLUMN disabled_by_user CASCADE;
