-- Open gaps of the ledger: runs of missing 1-minute bars inside open sessions
-- that no scan has seen filled yet, oldest first, with their age.
CREATE OR REPLACE VIEW tickagg.gaps_open AS
SELECT
    g.canonical_symbol,
    g.timeframe,
    g.gap_start,
    g.gap_end,
    g.missing_minutes,
    now() - g.gap_start AS age,
    g.detected_by,
    g.first_seen_at,
    g.last_seen_at
FROM tickagg.gap_ledger AS g
WHERE g.filled_at IS NULL
ORDER BY g.gap_start, g.canonical_symbol;
