-- Indicator values as a float array per bar instead of a jsonb object (issue 16):
-- building 29 jsonb numbers per bar (float8 -> text -> numeric) cost more than
-- computing them. A row keeps its values in the order of a key set (the names,
-- sma_N ... vwap, as computed with the parameters of the time), stored once in
-- indicator_key_sets; bar_indicators and export_batch turn the two back into the
-- same jsonb as before (indicators_json). Checkpoints change layout (the
-- windowed indicators now read their window from the bars), so the old ones
-- go: the next run of each task recomputes its series from the first bar and
-- rewrites only the values that differ. Setting indicator_timeframes chooses
-- the timeframes that get indicators at all.

CREATE TABLE tickagg.indicator_key_sets (
    key_set_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    keys text[] NOT NULL UNIQUE
);

COMMENT ON TABLE tickagg.indicator_key_sets IS
'Names of the values in derived_bar_indicators.vals, in order; one row per parameter set ever used.';

-- (migrations run before the functions exist: settings are read from the table)
-- Existing rows keep their values: the key set of the current parameters when a
-- row has exactly those keys (what the next run writes, so it rewrites nothing),
-- else the row's own keys (a series not yet recomputed after a parameter change).
CREATE TEMPORARY TABLE current_indicator_keys ON COMMIT DROP AS
SELECT
    array(
        SELECT 'sma_' || p.p
        FROM unnest(
                string_to_array((
                    SELECT s.setting_value FROM tickagg.settings AS s
                    WHERE s.setting_key = 'indicator_sma_periods'
                ), ',')
            ) WITH ORDINALITY AS p (p, o)
        ORDER BY p.o
    )
    || array(
        SELECT 'ema_' || p.p
        FROM unnest(
                string_to_array((
                    SELECT s.setting_value FROM tickagg.settings AS s
                    WHERE s.setting_key = 'indicator_ema_periods'
                ), ',')
            ) WITH ORDINALITY AS p (p, o)
        ORDER BY p.o
    )
    || ARRAY[
        'rsi', 'macd', 'macd_signal', 'macd_histogram', 'bb_middle', 'bb_upper', 'bb_lower', 'bb_width',
        'atr', 'stoch_k', 'stoch_d', 'cci', 'mfi', 'obv', 'adl', 'adx', 'plus_di', 'minus_di', 'vwap'
    ] AS keys;

CREATE TEMPORARY TABLE indicator_row_keys ON COMMIT DROP AS
SELECT
    k.canonical_symbol, k.timeframe, k.ts_utc, k.keys,
    array(
        SELECT (k.indicators ->> n.name)::double precision
        FROM unnest(k.keys) WITH ORDINALITY AS n (name, o)
        ORDER BY n.o
    ) AS vals
FROM (
    SELECT
        i.canonical_symbol, i.timeframe, i.ts_utc, i.indicators,
        CASE
            WHEN (SELECT array_agg(n.n ORDER BY n.n) FROM jsonb_object_keys(i.indicators) AS n (n))
                = (SELECT array_agg(n.n ORDER BY n.n) FROM current_indicator_keys AS c, unnest(c.keys) AS n (n))
                THEN (SELECT c.keys FROM current_indicator_keys AS c)
            ELSE array(SELECT n.n FROM jsonb_object_keys(i.indicators) AS n (n))
        END AS keys
    FROM tickagg.derived_bar_indicators AS i
) AS k;

INSERT INTO tickagg.indicator_key_sets (keys)
SELECT DISTINCT r.keys FROM indicator_row_keys AS r;

DROP VIEW IF EXISTS tickagg.bar_indicators;
ALTER TABLE tickagg.derived_bar_indicators
ADD COLUMN key_set_id integer,
ADD COLUMN vals double precision[];

UPDATE tickagg.derived_bar_indicators AS i SET
    key_set_id = s.key_set_id,
    vals = r.vals
FROM indicator_row_keys AS r
INNER JOIN tickagg.indicator_key_sets AS s ON s.keys = r.keys
WHERE r.canonical_symbol = i.canonical_symbol AND r.timeframe = i.timeframe AND r.ts_utc = i.ts_utc;

ALTER TABLE tickagg.derived_bar_indicators
DROP COLUMN indicators,
ALTER COLUMN key_set_id SET NOT NULL,
ALTER COLUMN vals SET NOT NULL;

COMMENT ON COLUMN tickagg.derived_bar_indicators.vals IS
'The values named by indicator_key_sets.keys of key_set_id, in that order; NULL before warm-up.';

DELETE FROM tickagg.indicator_checkpoints;

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
(
    'indicator_timeframes', 'all',
    'derived timeframes that get indicators: all, none, or a list such as 1h,1d (then tickagg sync)'
);
