-- One gap scan of a symbol's 1-minute bars, reconciled into gap_ledger.
--   live     [end - live window, end), end = now() - the task's aggregation_delay
--            (minutes that may still be arriving are not gaps yet). The live
--            window is setting gap_scan_live_window, capped by ticks_retention
--            when that is set: older minutes can no longer be rebuilt from ticks.
--   history  [agg_start_utc, start of the live window): everything older.
-- The window is widened to cover the open ledger gaps it touches, so a gap that
-- straddles its edge is judged whole. Then, for every open ledger gap:
--   still wholly missing     -> last_seen_at (grown to the run now found, if larger)
--   some minutes now present -> closed: filled_at, resolution 'filled' when no
--                               minute of it is missing any more, else
--                               'partly_filled' and the runs still missing become
--                               new rows
-- and every run found that no open gap covers becomes a new row. Scans of one
-- symbol serialise on an advisory lock. Returns jsonb counts; p_now and
-- p_from/p_to (overriding the window) exist for tests and manual scans, kept
-- within [agg_start, now() - delay] (the runner role may call this).
CREATE OR REPLACE FUNCTION tickagg.gap_scan_run(
    p_canonical_symbol text,
    p_scope text DEFAULT 'live',
    p_now timestamptz DEFAULT now(),
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_task_kind text;
    v_agg_start timestamptz;
    v_delay interval;
    v_window interval;
    v_end timestamptz;
    v_from timestamptz;
    v_to timestamptz;
    v_scan tstzrange;
    v_found tstzmultirange;
    v_gaps bigint;
    v_missing bigint;
    v_filled bigint;
    v_partly bigint;
    v_merged bigint;
    v_grown bigint;
    v_seen bigint;
    v_new bigint;
BEGIN
    IF p_scope IS NULL OR p_scope NOT IN ('live', 'history') THEN
        RAISE EXCEPTION 'unknown gap scan scope %', p_scope
            USING ERRCODE = 'TK004', HINT = 'Use ''live'' (the recent window) or ''history'' (everything older).';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tickagg.core_asset_registry_all AS r WHERE r.canonical_symbol = p_canonical_symbol)
    THEN
        RAISE EXCEPTION 'unknown symbol %', p_canonical_symbol
            USING ERRCODE = 'TK002', HINT = 'Register it first: tickagg symbols add SYMBOL --calendar CODE.';
    END IF;
    v_task_kind := CASE p_scope WHEN 'live' THEN 'gap_scan' ELSE 'gap_scan_history' END;

    SELECT s.agg_start_utc, s.aggregation_delay INTO v_agg_start, v_delay
    FROM tickagg.data_agg_state AS s
    WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = '1m' AND s.task_kind = v_task_kind;
    v_agg_start := coalesce(v_agg_start, tickagg.setting('default_agg_start')::timestamptz);
    v_delay := coalesce(v_delay, interval '2 minutes');
    v_window := least(
        tickagg.setting('gap_scan_live_window')::interval,
        coalesce(tickagg.setting('ticks_retention')::interval, tickagg.setting('gap_scan_live_window')::interval)
    );
    -- the database's clock bounds a caller's: a scan of minutes to come would
    -- open gaps that no later scan looks at again
    v_end := date_trunc('minute', least(p_now, now()) - v_delay);
    IF p_scope = 'live' THEN
        v_from := greatest(v_end - v_window, v_agg_start);
        v_to := v_end;
    ELSE
        v_from := v_agg_start;
        v_to := v_end - v_window;
    END IF;
    -- (and a window outside [agg_start, now]: nothing is materialised there)
    v_from := greatest(coalesce(p_from, v_from), v_agg_start);
    v_to := least(coalesce(p_to, v_to), v_end);

    IF v_to <= v_from THEN
        RETURN jsonb_build_object(
            'success', true, 'scope', p_scope, 'window_from', v_from, 'window_to', v_to,
            'scan_end', greatest(v_to, v_from), 'gaps_found', 0, 'missing_minutes', 0, 'gaps_new', 0,
            'gaps_seen', 0, 'gaps_grown', 0, 'gaps_filled', 0, 'gaps_partly_filled', 0, 'gaps_merged', 0
        );
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('tickagg.gap_scan:' || p_canonical_symbol, 0));

    -- widen to the open gaps the window touches
    SELECT tstzrange(least(v_from, min(g.gap_start)), greatest(v_to, max(g.gap_end)))
    INTO v_scan
    FROM tickagg.gap_ledger AS g
    WHERE
        g.canonical_symbol = p_canonical_symbol AND g.timeframe = '1m' AND g.filled_at IS NULL
        AND g.gap_start < v_to AND g.gap_end > v_from;
    v_scan := coalesce(v_scan, tstzrange(v_from, v_to));

    SELECT coalesce(range_agg(tstzrange(f.gap_start, f.gap_end)), '{}'::tstzmultirange), count(*),
        coalesce(sum(f.missing_candles), 0)
    INTO v_found, v_gaps, v_missing
    FROM tickagg.agg_find_gaps(p_canonical_symbol, '1m', lower(v_scan), upper(v_scan)) AS f;

    -- 1. open gaps with a minute present now are closed
    WITH closed AS (
        UPDATE tickagg.gap_ledger AS g SET
            filled_at = p_now,
            resolution = CASE
                WHEN v_found && tstzrange(g.gap_start, g.gap_end) THEN 'partly_filled' ELSE 'filled'
            END
        WHERE
            g.canonical_symbol = p_canonical_symbol AND g.timeframe = '1m' AND g.filled_at IS NULL
            AND tstzrange(g.gap_start, g.gap_end) <@ v_scan
            AND NOT tstzrange(g.gap_start, g.gap_end) <@ v_found
        RETURNING g.resolution
    )
    SELECT count(*) FILTER (WHERE c.resolution = 'filled'), count(*) FILTER (WHERE c.resolution = 'partly_filled')
    INTO v_filled, v_partly
    FROM closed AS c;

    -- 2. several open gaps inside one run (minutes between them were deleted):
    --    the earliest carries on, the others are merged into it
    WITH ranked AS (
        SELECT g.gap_id, row_number() OVER (PARTITION BY f.run ORDER BY g.gap_start) AS rn
        FROM tickagg.gap_ledger AS g
        INNER JOIN unnest(v_found) AS f (run)
            -- contained in the run; plain bounds so the open-gap index serves it
            ON g.gap_start >= lower(f.run) AND g.gap_start < upper(f.run) AND g.gap_end <= upper(f.run)
        WHERE g.canonical_symbol = p_canonical_symbol AND g.timeframe = '1m' AND g.filled_at IS NULL
    ),
    merged AS (
        UPDATE tickagg.gap_ledger AS g SET filled_at = p_now, resolution = 'merged'
        FROM ranked AS r
        WHERE g.gap_id = r.gap_id AND r.rn > 1
        RETURNING 1
    )
    SELECT count(*) INTO v_merged FROM merged;

    -- 3. the open gap inside each run takes the run's extent (it may have grown)
    WITH touched AS (
        UPDATE tickagg.gap_ledger AS g SET
            gap_start = lower(src.run),
            gap_end = upper(src.run),
            missing_minutes = (extract(EPOCH FROM upper(src.run) - lower(src.run)) / 60)::bigint,
            last_seen_at = p_now
        FROM (
            SELECT o.gap_id, tstzrange(o.gap_start, o.gap_end) AS old_range, f.run
            FROM tickagg.gap_ledger AS o
            INNER JOIN unnest(v_found) AS f (run)
                ON o.gap_start >= lower(f.run) AND o.gap_start < upper(f.run) AND o.gap_end <= upper(f.run)
            WHERE o.canonical_symbol = p_canonical_symbol AND o.timeframe = '1m' AND o.filled_at IS NULL
        ) AS src
        WHERE g.gap_id = src.gap_id
        RETURNING src.old_range = src.run AS unchanged
    )
    SELECT count(*) FILTER (WHERE t.unchanged), count(*) FILTER (WHERE NOT t.unchanged)
    INTO v_seen, v_grown
    FROM touched AS t;

    -- 4. runs no open gap covers are new (only those reaching into the window itself;
    --    ON CONFLICT guards an open gap outside the window starting at the same minute)
    WITH inserted AS (
        INSERT INTO tickagg.gap_ledger (
            canonical_symbol, timeframe, gap_start, gap_end, missing_minutes, detected_by, first_seen_at, last_seen_at
        )
        SELECT
            p_canonical_symbol, '1m', lower(f.run), upper(f.run),
            (extract(EPOCH FROM upper(f.run) - lower(f.run)) / 60)::bigint, p_scope, p_now, p_now
        FROM unnest(v_found) AS f (run)
        WHERE
            f.run && tstzrange(v_from, v_to)
            -- after step 3 an open gap inside a run starts where the run starts
            AND NOT EXISTS (
                SELECT 1 FROM tickagg.gap_ledger AS g
                WHERE
                    g.canonical_symbol = p_canonical_symbol AND g.timeframe = '1m' AND g.filled_at IS NULL
                    AND g.gap_start = lower(f.run)
            )
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO v_new FROM inserted;

    RETURN jsonb_build_object(
        'success', true,
        'scope', p_scope,
        'window_from', v_from,
        'window_to', v_to,
        'scan_from', lower(v_scan),
        'scan_to', upper(v_scan),
        'scan_end', v_to,
        'gaps_found', v_gaps,
        'missing_minutes', v_missing,
        'gaps_new', v_new,
        'gaps_seen', v_seen,
        'gaps_grown', v_grown,
        'gaps_filled', v_filled,
        'gaps_partly_filled', v_partly,
        'gaps_merged', v_merged
    );
END
$$;

COMMENT ON FUNCTION tickagg.gap_scan_run(text, text, timestamptz, timestamptz, timestamptz) IS
'One live or historical gap scan of a symbol''s 1-minute bars, reconciled into gap_ledger; returns jsonb counts.';
