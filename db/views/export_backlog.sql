-- Per export task: its cursor, the export horizon and how many bar changes of
-- the symbol wait above the cursor (exported on its next runs).
CREATE OR REPLACE VIEW tickagg.export_backlog AS
SELECT
    s.canonical_symbol,
    s.enabled,
    s.status,
    s.export_change_no,
    h.safe_change_no AS horizon_change_no,
    s.last_successful_at_utc,
    (
        (
            SELECT count(*) FROM tickagg.data_bars AS d
            WHERE d.canonical_symbol = s.canonical_symbol AND d.change_no > s.export_change_no
        )
        + (
            SELECT count(*) FROM tickagg.derived_data_bars AS b
            WHERE b.canonical_symbol = s.canonical_symbol AND b.change_no > s.export_change_no
        )
        + (
            SELECT count(*) FROM tickagg.data_bars_tombstones AS t
            WHERE t.canonical_symbol = s.canonical_symbol AND t.change_no > s.export_change_no
        )
    ) AS backlog
FROM tickagg.data_agg_state AS s
CROSS JOIN tickagg.export_horizon AS h
WHERE s.task_kind = 'export';
