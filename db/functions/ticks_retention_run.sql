-- Storage upkeep of ticks: create the daily partitions from today to
-- ticks_partitions_ahead days ahead, and drop every ticks_pYYYYMMDD partition
-- that ends at or before now() - ticks_retention -- but never one holding
-- minutes a ticks_1m task still needs: at or after the cursor of an enabled
-- ticks_1m task, or inside a late minute still queued. Those are reported as
-- held. Runs of several symbols' tasks serialise on an advisory lock (the work
-- is global; a run that finds it taken skips). Dropping a partition locks all
-- of ticks; rather than queue every producer behind a long transaction, a step
-- that cannot get its lock within lock_timeout is left to the next run
-- (reported as busy); so is, without waiting, a partition anyone holds a lock on
-- (an ingest holds its days from its check to its commit). Time is the
-- database's clock, never a caller's: a "now" passed in dropped young partitions.
-- Returns jsonb.
CREATE OR REPLACE FUNCTION tickagg.ticks_retention_run()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET timezone = 'UTC'
SET lock_timeout = '2s'
AS $$
DECLARE
    v_now timestamptz := now();
    v_cutoff timestamptz := v_now - tickagg.setting('ticks_retention')::interval;
    v_needed_from timestamptz;
    v_created text[];
    v_dropped text[] := '{}';
    v_held text[] := '{}';
    v_busy text[] := '{}';
    v_part record;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('tickagg.ticks_retention')) THEN
        RETURN jsonb_build_object('success', true, 'skipped', 'another retention run holds the lock');
    END IF;
    BEGIN
        v_created := tickagg.ticks_ensure_partitions(
            date_trunc('day', v_now),
            date_trunc('day', v_now) + tickagg.setting('ticks_partitions_ahead')::integer * interval '1 day'
        );
    EXCEPTION WHEN lock_not_available THEN
        v_busy := v_busy || 'create partitions ahead'::text;
    END;

    SELECT least(
        (
            SELECT min(s.last_agg_bar_ts_utc) FROM tickagg.data_agg_state AS s
            WHERE s.task_kind = 'ticks_1m' AND s.enabled
        ),
        (
            -- late minutes of enabled tasks only: a disabled task holds nothing
            SELECT min(lower(i.dirty_range))
            FROM tickagg.agg_invalidations AS i
            INNER JOIN tickagg.data_agg_state AS s
                ON
                    s.canonical_symbol = i.canonical_symbol AND s.timeframe = '1m'
                    AND s.task_kind = 'ticks_1m' AND s.enabled
            WHERE i.timeframe = '1m'
        )
    ) INTO v_needed_from;

    FOR v_part IN
        SELECT
            c.relname,
            to_date(substr(c.relname, 8), 'YYYYMMDD')::timestamptz + interval '1 day' AS part_end
        FROM pg_catalog.pg_inherits AS i
        INNER JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'tickagg.ticks'::regclass AND c.relname ~ '^ticks_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        CONTINUE WHEN v_part.part_end > v_cutoff;
        IF v_needed_from IS NOT NULL AND v_part.part_end > v_needed_from THEN
            v_held := v_held || v_part.relname::text;
            CONTINUE;
        END IF;
        -- DROP locks all of ticks before the day itself: waiting for a day in use
        -- (an ingest holds it from its check to its commit) would stall every
        -- reader and producer of ticks meanwhile. A day someone holds is busy now.
        IF EXISTS (
            SELECT 1 FROM pg_catalog.pg_locks AS l
            WHERE l.relation = format('tickagg.%I', v_part.relname)::regclass AND l.pid <> pg_backend_pid()
        ) THEN
            v_busy := v_busy || v_part.relname::text;
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('DROP TABLE tickagg.%I', v_part.relname);
            v_dropped := v_dropped || v_part.relname::text;
        EXCEPTION WHEN lock_not_available THEN
            v_busy := v_busy || v_part.relname::text;
        END;
    END LOOP;

    -- what files ingested long ago left for a next chunk that never came
    DELETE FROM tickagg.tick_batch_edges AS e WHERE e.recorded_at < v_now - interval '1 day';

    RETURN jsonb_build_object(
        'success', true,
        'partitions_created', to_jsonb(v_created),
        'partitions_dropped', to_jsonb(v_dropped),
        'partitions_held', to_jsonb(v_held),
        'busy', to_jsonb(v_busy),
        'cutoff', v_cutoff,
        'needed_from', v_needed_from
    );
END
$$;

COMMENT ON FUNCTION tickagg.ticks_retention_run() IS
'Create ticks partitions ahead and drop those older than ticks_retention that no ticks_1m task still needs; returns jsonb.';
