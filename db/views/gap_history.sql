-- Every ledger gap, open or closed: when it was first and last seen, and when
-- and how it was resolved ('filled', 'partly_filled' with the rest as newer
-- rows, 'merged' into a larger gap).
CREATE OR REPLACE VIEW tickagg.gap_history AS
SELECT
    g.canonical_symbol,
    g.timeframe,
    g.gap_start,
    g.gap_end,
    g.missing_minutes,
    coalesce(g.resolution, 'open') AS state,
    g.detected_by,
    g.first_seen_at,
    g.last_seen_at,
    g.filled_at,
    g.filled_at - g.first_seen_at AS time_to_fill
FROM tickagg.gap_ledger AS g;
