-- Ticks storage at a glance (tickagg status): daily partitions, the oldest and
-- newest day kept, their total size and row estimate, and the retention setting.
CREATE OR REPLACE VIEW tickagg.ticks_storage AS
SELECT
    count(c.oid) AS partitions,
    min(to_date(substr(c.relname, 8), 'YYYYMMDD')) AS oldest_day,
    max(to_date(substr(c.relname, 8), 'YYYYMMDD')) AS newest_day,
    coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint AS total_bytes,
    coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS estimated_ticks,
    tickagg.setting('ticks_retention') AS retention,
    tickagg.setting('ticks_partitions_ahead')::integer AS partitions_ahead
FROM pg_catalog.pg_inherits AS i
INNER JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'tickagg.ticks'::regclass AND c.relname ~ '^ticks_p[0-9]{8}$';

COMMENT ON VIEW tickagg.ticks_storage IS
'Ticks partitions: count, oldest and newest day, total size, estimated rows, retention setting.';
