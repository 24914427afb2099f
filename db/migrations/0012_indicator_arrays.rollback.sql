-- Undo 0012: the jsonb column comes back from the arrays and their key sets; the
-- new checkpoint layout means nothing to the previous code, so checkpoints go
-- (each series is recomputed from its first bar and rewrites nothing unchanged).
DROP VIEW IF EXISTS tickagg.bar_indicators;
DROP FUNCTION IF EXISTS tickagg.indicators_json(integer, double precision[]);
ALTER TABLE tickagg.derived_bar_indicators ADD COLUMN indicators jsonb;
UPDATE tickagg.derived_bar_indicators AS i SET
    indicators = (
        SELECT jsonb_object_agg(u.k, u.v)
        FROM tickagg.indicator_key_sets AS s, unnest(s.keys, i.vals) AS u (k, v)
        WHERE s.key_set_id = i.key_set_id
    );
ALTER TABLE tickagg.derived_bar_indicators
DROP COLUMN key_set_id,
DROP COLUMN vals,
ALTER COLUMN indicators SET NOT NULL;
DROP TABLE tickagg.indicator_key_sets;
DELETE FROM tickagg.indicator_checkpoints;
DELETE FROM tickagg.settings
WHERE setting_key = 'indicator_timeframes';
