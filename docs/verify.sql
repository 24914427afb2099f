SET search_path = tickagg, public;
-- tickagg verification toolbox for psql, adapted from the deployment guides
-- (seeds 004 and 002) to tickagg's tables, views and functions. Every statement
-- is read-only (agg_get_due_tasks is called without a lease: inspect mode, no
-- claim) and runs as-is after the SET above, so you can run the whole file:
--
--   psql "$TICKAGG_DSN" -X -v ON_ERROR_STOP=1 -f docs/verify.sql
--
-- or paste single queries. Run it as the admin role (it reads tables and
-- pg_catalog); tests/test_verify_sql.py runs the whole file on a demo-like database.

-- =====================================================================
-- 1. Schema
-- =====================================================================

-- Expected: agg_start_utc, enabled, task_priority (and disabled_by_user from 0005)
SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = 'tickagg' AND table_name = 'data_agg_state'
  AND column_name IN ('agg_start_utc', 'enabled', 'task_priority', 'disabled_by_user')
ORDER BY ordinal_position;

-- Expected: one row per migration in db/migrations (0001 .. 0006 and later)
SELECT migration_id, applied_at_utc
FROM _yoyo_migration
ORDER BY migration_id;

-- Expected: 1 row (the claim order index)
SELECT indexname FROM pg_indexes
WHERE schemaname = 'tickagg' AND tablename = 'data_agg_state' AND indexname = 'idx_agg_state_due_priority';

-- Function/view files and when their current content was applied (`tickagg migrate`)
SELECT path, applied_at FROM schema_files ORDER BY applied_at DESC, path LIMIT 20;

-- Table sizes
SELECT
    c.relname AS table_name,
    pg_size_pretty(pg_total_relation_size(c.oid)) AS total_size,
    c.reltuples::bigint AS estimated_rows
FROM pg_class AS c
WHERE c.relnamespace = 'tickagg'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC;

-- =====================================================================
-- 2. Functions
-- =====================================================================

-- Expected: prosecdef = true, owner = the migrating role
SELECT proname, prosecdef, proowner::regrole
FROM pg_proc
WHERE pronamespace = 'tickagg'::regnamespace
  AND proname IN ('agg_bootstrap_cursor', 'catchup_aggregation_range', 'agg_finish',
                  'agg_get_due_tasks', 'sync_agg_state_from_registry',
                  'agg_task_set_enabled', 'agg_task_reset')
ORDER BY proname;

-- Expected: 0 rows (every SECURITY DEFINER function pins its search_path)
SELECT p.oid::regprocedure AS unpinned_security_definer
FROM pg_proc AS p
WHERE p.pronamespace = 'tickagg'::regnamespace AND p.prosecdef
  AND NOT ('search_path=pg_catalog, tickagg, pg_temp' = ANY(coalesce(p.proconfig, '{}')));

-- Expected: 0 rows (PUBLIC executes nothing; tickagg_runner executes everything)
SELECT
    p.oid::regprocedure AS function_name,
    has_function_privilege('tickagg_runner', p.oid, 'EXECUTE') AS runner_can_execute
FROM pg_proc AS p
WHERE p.pronamespace = 'tickagg'::regnamespace
  AND (
      NOT has_function_privilege('tickagg_runner', p.oid, 'EXECUTE')
      OR EXISTS (
          SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
          WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'
      )
  );

-- agg_bootstrap_cursor: the first bucket boundary at or after agg_start_utc, per task
SELECT canonical_symbol, timeframe, agg_start_utc,
       agg_bootstrap_cursor(canonical_symbol, timeframe) AS first_bucket
FROM data_agg_state
WHERE task_kind = 'rollup'
ORDER BY canonical_symbol, timeframe_step
LIMIT 20;

-- Tasks due now (inspect mode: no lease argument, nothing is claimed)
SELECT COUNT(*) AS due_tasks FROM agg_get_due_tasks('prod', NOW());

-- =====================================================================
-- 3. Data integrity
-- =====================================================================

-- Expected: 0
SELECT COUNT(*) AS null_start_dates FROM data_agg_state WHERE agg_start_utc IS NULL;

-- Expected: 0 unless you disabled some intentionally (by_user = `tickagg tasks disable`)
SELECT COUNT(*) AS disabled_tasks,
       COUNT(*) FILTER (WHERE disabled_by_user) AS disabled_by_user
FROM data_agg_state WHERE enabled = false;

-- Task priorities in use (rollups 100, gap scans and exports their settings)
SELECT task_kind, task_priority, COUNT(*) AS tasks
FROM data_agg_state GROUP BY task_kind, task_priority ORDER BY task_kind, task_priority;

-- Expected: 0 rows (a running task always holds a claim and a lease; cursors never precede the start)
SELECT canonical_symbol, timeframe, task_kind, status, claim_token, lease_expires_at
FROM data_agg_state
WHERE (status = 'running') <> (claim_token IS NOT NULL AND lease_expires_at IS NOT NULL)
   OR last_agg_bar_ts_utc < agg_start_utc - timeframe_step;

-- Expected: 0 (OHLC consistency of live derived bars)
SELECT COUNT(*) AS inconsistent_derived_bars
FROM derived_data_bars
WHERE deleted_at IS NULL
  AND (high < low OR open NOT BETWEEN low AND high OR close NOT BETWEEN low AND high OR volume < 0);

-- Expected: 0 (derived bars never lie beyond their task's cursor)
SELECT COUNT(*) AS bars_beyond_cursor
FROM derived_data_bars AS d
INNER JOIN data_agg_state AS s
    ON s.canonical_symbol = d.canonical_symbol AND s.timeframe = d.timeframe AND s.task_kind = 'rollup'
WHERE d.deleted_at IS NULL AND d.bucket_end > s.last_agg_bar_ts_utc;

-- Bars per symbol and timeframe
SELECT * FROM bar_counts;

-- =====================================================================
-- 4. Lag
-- =====================================================================

-- Cursor against the newest 1-minute bar (seed 004). Expected: lag < 1 hour for mandatory tasks
SELECT s.canonical_symbol, s.timeframe,
       MAX(db.ts_utc) as latest_1m_bar,
       s.last_agg_bar_ts_utc as cursor_position,
       MAX(db.ts_utc) - s.last_agg_bar_ts_utc as lag_duration
FROM data_bars db
JOIN data_agg_state s ON s.canonical_symbol = db.canonical_symbol
WHERE db.timeframe = '1m' AND s.task_kind = 'rollup'
GROUP BY s.canonical_symbol, s.timeframe, s.last_agg_bar_ts_utc
ORDER BY lag_duration DESC NULLS LAST;

-- HEALTHY / WARNING (> 2 min) / DELAYED (> 5 min), seed 002's aggregation_health
SELECT status, COUNT(*) AS tasks, MAX(refresh_lag) AS max_refresh_lag
FROM aggregation_health GROUP BY status ORDER BY status;

-- Alert: mandatory tasks more than 1 hour behind (seed 004)
SELECT s.canonical_symbol, s.timeframe
FROM data_agg_state s
WHERE s.is_mandatory = true AND s.task_kind = 'rollup'
  AND NOW() - COALESCE(s.last_agg_bar_ts_utc, '1970-01-01') > INTERVAL '1 hour';

-- =====================================================================
-- 5. Failure rate
-- =====================================================================

-- Expected: failing_tasks = 0, hard_failed = 0, disabled = 0
SELECT COUNT(*) as total_tasks,
       COUNT(*) FILTER (WHERE hard_fail_streak > 0) as failing_tasks,
       COUNT(*) FILTER (WHERE status = 'hard_failed') as hard_failed,
       COUNT(*) FILTER (WHERE status = 'disabled') as disabled
FROM data_agg_state;

-- Tasks failing now (reset with `tickagg tasks reset SYMBOL --timeframe TF [--force]`)
SELECT canonical_symbol, timeframe, task_kind, status, hard_fail_streak, transient_fail_streak, last_error
FROM data_agg_state
WHERE status = 'hard_failed' OR hard_fail_streak > 0 OR transient_fail_streak > 0
ORDER BY status, canonical_symbol, timeframe;

-- Runs in the last 24 hours by kind and outcome (ops_runlog)
SELECT task_kind, outcome, COUNT(*) AS runs, SUM(bars_written) AS bars_written,
       ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY task_kind), 2) AS pct_of_kind
FROM ops_runlog
WHERE started_at >= NOW() - INTERVAL '24 hours'
GROUP BY task_kind, outcome
ORDER BY task_kind, outcome;

-- Last errors
SELECT started_at, canonical_symbol, timeframe, task_kind, outcome, error
FROM ops_runlog_recent WHERE outcome <> 'success' LIMIT 20;

-- =====================================================================
-- 6. Quality
-- =====================================================================

-- Share of bars with quality_score >= 1 over 24 hours (seed 004). Expected: >= 90 %
SELECT ddb.canonical_symbol, ddb.timeframe,
       COUNT(*) as total_bars,
       COUNT(*) FILTER (WHERE quality_score >= 1) as good_bars,
       ROUND(100.0 * COUNT(*) FILTER (WHERE quality_score >= 1) / COUNT(*), 2) as quality_pct
FROM derived_data_bars ddb
WHERE ddb.deleted_at IS NULL
  AND ddb.ts_utc >= NOW() - INTERVAL '24 hours'
GROUP BY ddb.canonical_symbol, ddb.timeframe
ORDER BY ddb.canonical_symbol, ddb.timeframe;

-- Coverage of expected 1-minute bars (alerts below 99 % over 24 h, 98 % over 7 days)
SELECT canonical_symbol, coverage_24h, coverage_7d, open_gaps, oldest_gap_age,
       coverage_24h_low, coverage_7d_low, oldest_gap_too_old
FROM coverage ORDER BY canonical_symbol;

-- Open gaps, oldest first (alert when older than 24 hours)
SELECT * FROM gaps_open ORDER BY age DESC LIMIT 20;

-- Newest 1-minute minutes and their bar counts (seed 002's "is new data written")
SELECT date_trunc('minute', ts_utc) AS minute, COUNT(*) AS candle_count
FROM data_bars
WHERE ts_utc > (SELECT MAX(ts_utc) FROM data_bars) - INTERVAL '1 hour'
GROUP BY 1 ORDER BY 1 DESC LIMIT 10;

-- Latest 5-minute bars of one symbol through the real-time view
SELECT * FROM ohlcv_5min
WHERE canonical_symbol = (SELECT MIN(canonical_symbol) FROM data_agg_state)
  AND bucket > NOW() - INTERVAL '1 day'
ORDER BY bucket DESC
LIMIT 20;

-- =====================================================================
-- 7. Index usage
-- =====================================================================

-- The due-task query (seed 004; inspect mode, claims nothing).
-- Inside the function: Index Scan on idx_agg_state_due_priority / idx_agg_state_next_run
EXPLAIN (ANALYZE, BUFFERS)
SELECT * FROM agg_get_due_tasks('prod', NOW());

-- A real-time view over 7 days of one symbol (seed 002): index scans on the
-- primary keys of derived_data_bars and data_bars, no Seq Scan on large tables
EXPLAIN (ANALYZE, BUFFERS)
SELECT * FROM ohlcv_15min
WHERE canonical_symbol = (SELECT MIN(canonical_symbol) FROM data_agg_state)
  AND bucket > NOW() - INTERVAL '7 days';

-- Index scans per index since the statistics were reset; idx_scan = 0 for long = unused
SELECT relname AS table_name, indexrelname AS index_name, idx_scan,
       pg_size_pretty(pg_relation_size(indexrelid)) AS index_size
FROM pg_stat_user_indexes
WHERE schemaname = 'tickagg'
ORDER BY relname, indexrelname;

-- Dead rows (bloat); `tickagg doctor` warns above 0.5 dead per live row of data_agg_state
SELECT relname AS table_name, n_live_tup, n_dead_tup,
       ROUND(n_dead_tup::numeric / GREATEST(n_live_tup, 1), 2) AS dead_ratio,
       last_autovacuum, last_vacuum
FROM pg_stat_user_tables
WHERE schemaname = 'tickagg'
ORDER BY n_dead_tup DESC;

-- =====================================================================
-- 8. Ticks (tick-fed symbols)
-- =====================================================================

-- Storage: daily partitions kept, oldest day, size, retention (also in `tickagg status`)
SELECT * FROM ticks_storage;

-- ticks_1m lag: the cursor is the next minute to aggregate. Expected: a minute or two
-- (more when a symbol's feed is quiet); pending_late_ranges drain on the next run
SELECT s.canonical_symbol, s.status, s.last_agg_bar_ts_utc AS next_minute,
       NOW() - s.last_agg_bar_ts_utc AS lag, s.aggregation_delay,
       (SELECT COUNT(*) FROM agg_invalidations AS i
        WHERE i.canonical_symbol = s.canonical_symbol AND i.timeframe = '1m') AS pending_late_ranges
FROM data_agg_state AS s
WHERE s.task_kind = 'ticks_1m'
ORDER BY lag DESC;

-- Rejected ticks in the last 24 hours by reason (tick_rejects_recent has the rows)
SELECT LEFT(reason, 60) AS reason, COUNT(*) AS ticks
FROM tick_rejects
WHERE rejected_at >= NOW() - INTERVAL '24 hours'
GROUP BY 1
ORDER BY 2 DESC;
