-- Make data_agg_state match the registry for one environment: a rollup task for
-- every wanted timeframe of every active symbol, plus the timeframes they roll up
-- from; existing tasks follow is_mandatory; tasks no longer wanted are disabled
-- (enabled = false, cursor kept); tasks an operator disabled (disabled_by_user,
-- see agg_task_set_enabled) stay disabled. Checks that each hierarchy step nests first.
-- Every active symbol also gets two optional gap-scan tasks on '1m': gap_scan
-- (live window, every gap_scan_live_interval) and gap_scan_history (older data,
-- every gap_scan_history_interval); see gap_scan_run. Every active tick-fed
-- symbol (source_kind 'ticks') also gets a ticks_1m task (ticks to 1-minute
-- bars, cursor = the next minute to aggregate); the first of them (by name) in
-- each environment gets the one ticks_retention task (partitions ahead, old
-- partitions dropped for the whole ticks table; see ticks_retention_run).
-- Every rollup task gets an optional indicators task of the same symbol and
-- timeframe (setting indicators_enabled), enabled exactly when its rollup is,
-- if its timeframe is in indicator_timeframes (the others are removed, see
-- indicators_drop_timeframes).
-- A new indicators task without bars starts asleep: its bars wake it.
-- An explicit p_start earlier than existing tasks' start reaches back: see below.
CREATE OR REPLACE FUNCTION tickagg.sync_agg_state_from_registry(
    p_env text DEFAULT 'prod',
    p_start timestamptz DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_start timestamptz := coalesce(p_start, tickagg.setting('default_agg_start')::timestamptz);
    v_created bigint;
    v_updated bigint;
    v_disabled bigint;
    v_problem record;
    v_scans_created bigint;
    v_scans_updated bigint;
    v_scans_disabled bigint;
    v_ticks_created bigint;
    v_ticks_updated bigint;
    v_ticks_disabled bigint;
    v_ind_created bigint;
    v_ind_updated bigint;
    v_ind_disabled bigint;
    v_ind_removed bigint;
    v_rewound bigint := 0;
    v_ind_timeframes text[] := tickagg.indicator_timeframes();
BEGIN
    IF p_env IS NULL OR p_env NOT IN ('prod', 'test') THEN
        RAISE EXCEPTION 'unknown environment %', p_env
            USING ERRCODE = 'TK004', HINT = 'Use ''prod'' (registry.active) or ''test'' (registry.test_active).';
    END IF;

    SELECT * INTO v_problem FROM tickagg.timeframe_hierarchy_problems() LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'timeframe % cannot be built from %: %',
            v_problem.timeframe, v_problem.source_timeframe, v_problem.problem
            USING ERRCODE = 'TK005',
                  HINT = 'Pick a source timeframe whose buckets nest inside the target''s (see tickagg.timeframes).';
    END IF;

    -- Tasks of symbols active in the other environment are kept, not disabled.
    WITH RECURSIVE wanted (canonical_symbol, timeframe, is_mandatory, in_env) AS (
        SELECT
            r.canonical_symbol, w.timeframe, r.is_mandatory,
            CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
        FROM tickagg.core_asset_registry_all AS r
        CROSS JOIN LATERAL unnest(r.timeframes) AS w (timeframe)
        WHERE r.active OR r.test_active
        UNION
        SELECT w.canonical_symbol, t.source_timeframe, w.is_mandatory, w.in_env
        FROM wanted AS w
        INNER JOIN tickagg.timeframes AS t ON t.timeframe = w.timeframe
        WHERE t.source_timeframe IS NOT NULL
    ),
    wanted_tasks AS MATERIALIZED (
        SELECT
            w.canonical_symbol, w.timeframe, bool_or(w.is_mandatory) AS is_mandatory, bool_or(w.in_env) AS in_env
        FROM wanted AS w
        INNER JOIN tickagg.timeframes AS t ON t.timeframe = w.timeframe
        WHERE t.source_timeframe IS NOT NULL
        GROUP BY w.canonical_symbol, w.timeframe
    ),
    -- A new task of a level above 5m waits like every later run of it does: for
    -- the bucket at its cursor, which its source's cursor passing makes due
    -- (agg_finish wakes it); due now only when its source is past it already.
    created AS (
        INSERT INTO tickagg.data_agg_state (
            canonical_symbol, timeframe, timeframe_step, task_kind, is_mandatory, agg_start_utc,
            last_agg_bar_ts_utc, pending_bucket_end, next_run_at
        )
        SELECT
            w.canonical_symbol, w.timeframe, t.step, 'rollup', w.is_mandatory, v_start, c.cursor_ts,
            p.bucket_end,
            CASE
                WHEN p.bucket_end IS NULL OR EXISTS (
                    SELECT 1 FROM tickagg.data_agg_state AS src
                    WHERE
                        src.canonical_symbol = w.canonical_symbol AND src.timeframe = t.source_timeframe
                        AND src.task_kind = 'rollup' AND src.last_agg_bar_ts_utc >= p.bucket_end
                ) THEN now()
                ELSE now() + tickagg.setting('idle_recheck_interval')::interval
            END
        FROM wanted_tasks AS w
        INNER JOIN tickagg.timeframes AS t ON t.timeframe = w.timeframe
        INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = w.canonical_symbol
        CROSS JOIN LATERAL tickagg.agg_bootstrap_cursor(w.canonical_symbol, w.timeframe, v_start) AS c (cursor_ts)
        LEFT JOIN LATERAL (
            SELECT tickagg.rollup_bucket_end(r.calendar_code, w.timeframe, c.cursor_ts) AS bucket_end
            WHERE t.source_timeframe <> '1m'
        ) AS p ON true
        WHERE w.in_env
        ON CONFLICT (canonical_symbol, timeframe, task_kind) DO NOTHING
        RETURNING 1
    ),
    updated AS (
        UPDATE tickagg.data_agg_state AS s SET
            is_mandatory = w.is_mandatory, enabled = NOT s.disabled_by_user, updated_at = now(),
            -- a task enabled again has been asleep: look at it now
            next_run_at = CASE WHEN s.enabled THEN s.next_run_at ELSE least(s.next_run_at, now()) END
        FROM wanted_tasks AS w
        WHERE
            w.in_env
            AND s.canonical_symbol = w.canonical_symbol AND s.timeframe = w.timeframe AND s.task_kind = 'rollup'
            AND (s.is_mandatory IS DISTINCT FROM w.is_mandatory OR (NOT s.enabled AND NOT s.disabled_by_user))
        RETURNING 1
    ),
    disabled AS (
        UPDATE tickagg.data_agg_state AS s SET enabled = false, updated_at = now()
        WHERE
            s.task_kind = 'rollup'
            AND s.enabled
            AND NOT EXISTS (
                SELECT 1 FROM wanted_tasks AS w
                WHERE w.canonical_symbol = s.canonical_symbol AND w.timeframe = s.timeframe
            )
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM updated), (SELECT count(*) FROM disabled)
    INTO v_created, v_updated, v_disabled;

    -- An explicit start earlier than a task's start reaches back (it was ignored,
    -- so minutes before the first start never got derived bars). A rollup that
    -- has materialised something gets the new stretch as a dirty span behind its
    -- cursor (the late-data path: bars already there stay, only the stretch is
    -- derived, higher levels follow by the cascade); one that has not starts from
    -- the new start. History gap scans and tick aggregation look back as far.
    IF p_start IS NOT NULL THEN
        WITH earlier AS MATERIALIZED (
            SELECT
                s.canonical_symbol, s.timeframe, s.task_kind, s.agg_start_utc AS old_start,
                s.task_kind = 'rollup' AND s.last_agg_bar_ts_utc
                > tickagg.agg_bootstrap_cursor(s.canonical_symbol, s.timeframe, s.agg_start_utc) AS materialised
            FROM tickagg.data_agg_state AS s
            INNER JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = s.canonical_symbol
            WHERE
                s.agg_start_utc > p_start AND s.task_kind IN ('rollup', 'gap_scan_history', 'ticks_1m')
                AND CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END
            FOR UPDATE OF s
        ),
        dirtied AS (
            INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)
            SELECT e.canonical_symbol, e.timeframe, tstzrange(p_start, e.old_start)
            FROM earlier AS e
            WHERE e.materialised
        ),
        rewound AS (
            UPDATE tickagg.data_agg_state AS s SET
                agg_start_utc = p_start,
                last_agg_bar_ts_utc = CASE
                    WHEN e.task_kind = 'rollup' AND NOT e.materialised
                        THEN tickagg.agg_bootstrap_cursor(s.canonical_symbol, s.timeframe, p_start)
                    WHEN e.task_kind = 'ticks_1m' THEN least(s.last_agg_bar_ts_utc, date_trunc('minute', p_start))
                    ELSE s.last_agg_bar_ts_utc
                END,
                pending_bucket_end = CASE WHEN e.task_kind = 'rollup' THEN NULL ELSE s.pending_bucket_end END,
                next_run_at = least(s.next_run_at, now()),
                updated_at = now()
            FROM earlier AS e
            WHERE s.canonical_symbol = e.canonical_symbol AND s.timeframe = e.timeframe AND s.task_kind = e.task_kind
            RETURNING 1
        )
        SELECT count(*) INTO v_rewound FROM rewound;
    END IF;

    -- The companion tasks, one statement for all their kinds: two gap scans per
    -- symbol, ticks_1m and ticks_retention per tick-fed symbol (on '1m'), and an
    -- indicators task beside every enabled rollup (read after the rollups above
    -- were synced). Tasks of symbols active in the other environment are kept.
    WITH wanted AS MATERIALIZED (
        SELECT
            r.canonical_symbol, '1m' AS timeframe, interval '1 minute' AS timeframe_step, k.task_kind,
            r.is_mandatory AND k.task_kind = 'ticks_1m' AS is_mandatory,
            v_start AS agg_start_utc,
            -- a ticks task's cursor is a minute; a gap scan's is where it looked from
            CASE WHEN k.tick_fed_only THEN date_trunc('minute', v_start) ELSE v_start END AS cursor_ts,
            k.run_interval, k.task_priority, k.aggregation_delay,
            CASE p_env WHEN 'prod' THEN r.active ELSE r.test_active END AS in_env,
            now() AS next_run_at
        FROM tickagg.core_asset_registry_all AS r
        CROSS JOIN (
            VALUES
            (
                'gap_scan', false, tickagg.setting('gap_scan_live_interval')::interval,
                tickagg.setting('gap_scan_live_priority')::integer, interval '2 minutes'
            ),
            (
                'gap_scan_history', false, tickagg.setting('gap_scan_history_interval')::interval,
                tickagg.setting('gap_scan_history_priority')::integer, interval '2 minutes'
            ),
            (
                'ticks_1m', true, interval '1 minute', tickagg.setting('ticks_1m_priority')::integer,
                tickagg.setting('ticks_1m_delay')::interval
            ),
            (
                'ticks_retention', true, tickagg.setting('ticks_retention_interval')::interval,
                tickagg.setting('ticks_retention_priority')::integer, interval '0'
            )
        ) AS k (task_kind, tick_fed_only, run_interval, task_priority, aggregation_delay)
        WHERE
            (r.active OR r.test_active) AND (NOT k.tick_fed_only OR r.source_kind = 'ticks')
            -- retention is the ticks table's, not a symbol's: one task per environment,
            -- on its first tick-fed symbol (one per symbol ran the same work 1,000
            -- times a cycle at 1,000 symbols); it moves when that symbol leaves
            AND (
                k.task_kind <> 'ticks_retention'
                OR r.canonical_symbol IN (
                    SELECT min(x.canonical_symbol) FROM tickagg.core_asset_registry_all AS x
                    WHERE x.source_kind = 'ticks' AND x.active
                    UNION ALL
                    SELECT min(x.canonical_symbol) FROM tickagg.core_asset_registry_all AS x
                    WHERE x.source_kind = 'ticks' AND x.test_active
                )
            )
        UNION ALL
        SELECT
            s.canonical_symbol, s.timeframe, s.timeframe_step, 'indicators', false,
            s.agg_start_utc, s.agg_start_utc, interval '1 minute',
            tickagg.setting('indicators_priority')::integer, interval '2 minutes', true,
            -- without bars yet it waits for them (derived_bars_changed wakes it)
            CASE
                WHEN EXISTS (
                    SELECT 1 FROM tickagg.derived_data_bars AS d
                    WHERE d.canonical_symbol = s.canonical_symbol AND d.timeframe = s.timeframe
                )
                    THEN now()
                ELSE now() + tickagg.setting('idle_recheck_interval')::interval
            END
        FROM tickagg.data_agg_state AS s
        WHERE
            s.task_kind = 'rollup' AND s.enabled AND tickagg.setting('indicators_enabled')::boolean
            AND s.timeframe = ANY(v_ind_timeframes)
    ),
    created AS (
        INSERT INTO tickagg.data_agg_state (
            canonical_symbol, timeframe, timeframe_step, task_kind, is_mandatory, agg_start_utc,
            last_agg_bar_ts_utc, run_interval, task_priority, aggregation_delay, next_run_at
        )
        SELECT
            w.canonical_symbol, w.timeframe, w.timeframe_step, w.task_kind, w.is_mandatory,
            w.agg_start_utc, w.cursor_ts, w.run_interval, w.task_priority, w.aggregation_delay, w.next_run_at
        FROM wanted AS w
        WHERE w.in_env
        ON CONFLICT (canonical_symbol, timeframe, task_kind) DO NOTHING
        RETURNING task_kind
    ),
    updated AS (
        UPDATE tickagg.data_agg_state AS s SET
            is_mandatory = w.is_mandatory, enabled = NOT s.disabled_by_user, updated_at = now(),
            -- a task enabled again has been asleep: look at it now
            next_run_at = CASE WHEN s.enabled THEN s.next_run_at ELSE least(s.next_run_at, now()) END
        FROM wanted AS w
        WHERE
            w.in_env
            AND s.canonical_symbol = w.canonical_symbol AND s.timeframe = w.timeframe AND s.task_kind = w.task_kind
            AND (s.is_mandatory IS DISTINCT FROM w.is_mandatory OR (NOT s.enabled AND NOT s.disabled_by_user))
        RETURNING s.task_kind
    ),
    disabled AS (
        UPDATE tickagg.data_agg_state AS s SET enabled = false, updated_at = now()
        WHERE
            s.task_kind IN ('gap_scan', 'gap_scan_history', 'ticks_1m', 'ticks_retention', 'indicators')
            AND s.enabled
            AND NOT EXISTS (
                SELECT 1 FROM wanted AS w
                WHERE
                    w.canonical_symbol = s.canonical_symbol AND w.timeframe = s.timeframe
                    AND w.task_kind = s.task_kind
            )
        RETURNING s.task_kind
    ),
    counted AS (
        SELECT 'created' AS change, c.task_kind FROM created AS c
        UNION ALL
        SELECT 'updated', u.task_kind FROM updated AS u
        UNION ALL
        SELECT 'disabled', d.task_kind FROM disabled AS d
    )
    SELECT
        count(*) FILTER (WHERE c.change = 'created' AND c.task_kind LIKE 'gap_scan%'),
        count(*) FILTER (WHERE c.change = 'updated' AND c.task_kind LIKE 'gap_scan%'),
        count(*) FILTER (WHERE c.change = 'disabled' AND c.task_kind LIKE 'gap_scan%'),
        count(*) FILTER (WHERE c.change = 'created' AND c.task_kind LIKE 'ticks%'),
        count(*) FILTER (WHERE c.change = 'updated' AND c.task_kind LIKE 'ticks%'),
        count(*) FILTER (WHERE c.change = 'disabled' AND c.task_kind LIKE 'ticks%'),
        count(*) FILTER (WHERE c.change = 'created' AND c.task_kind = 'indicators'),
        count(*) FILTER (WHERE c.change = 'updated' AND c.task_kind = 'indicators'),
        count(*) FILTER (WHERE c.change = 'disabled' AND c.task_kind = 'indicators')
    INTO
        v_scans_created, v_scans_updated, v_scans_disabled,
        v_ticks_created, v_ticks_updated, v_ticks_disabled,
        v_ind_created, v_ind_updated, v_ind_disabled
    FROM counted AS c;
    v_ind_removed := tickagg.indicators_drop_timeframes();

    RETURN jsonb_build_object(
        'success', true,
        'env', p_env,
        'tasks_created', v_created,
        'tasks_updated', v_updated,
        'tasks_disabled', v_disabled,
        'tasks_rewound', v_rewound,
        'gap_scan_tasks_created', v_scans_created,
        'gap_scan_tasks_updated', v_scans_updated,
        'gap_scan_tasks_disabled', v_scans_disabled,
        'ticks_tasks_created', v_ticks_created,
        'ticks_tasks_updated', v_ticks_updated,
        'ticks_tasks_disabled', v_ticks_disabled,
        'indicators_tasks_created', v_ind_created,
        'indicators_tasks_updated', v_ind_updated,
        'indicators_tasks_disabled', v_ind_disabled,
        'indicators_tasks_removed', v_ind_removed,
        'tasks_total', (SELECT count(*) FROM tickagg.data_agg_state)
    );
END
$$;

COMMENT ON FUNCTION tickagg.sync_agg_state_from_registry(text, timestamptz) IS
'Create, update and disable rollup, gap-scan, ticks and indicators tasks so data_agg_state matches the registry for an environment; returns jsonb counts.';
