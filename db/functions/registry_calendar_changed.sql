-- Trigger on core_asset_registry_all: a symbol moved to another calendar has
-- every derived bar on the old calendar's buckets (1d closing at the wrong hour,
-- buckets over what is now a weekend, the wrong expected candles). Its rollup
-- tasks start over from their first bucket under the new calendar, taken from a
-- runner that holds one (its finish is then fenced off and writes nothing): the
-- catch-up re-derives every bucket and soft-deletes the old ones in its ranges;
-- old bars before the first new bucket are soft-deleted here (both exported as
-- deletes; indicators recompute from the first changed bar). Its
-- dirty spans are covered by that, and its gap scans look again at once (gaps
-- that are closed time now are closed by the scan).
CREATE OR REPLACE FUNCTION tickagg.registry_calendar_changed()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    DELETE FROM tickagg.agg_invalidations AS i WHERE i.canonical_symbol = NEW.canonical_symbol;
    UPDATE tickagg.data_agg_state AS s SET
        last_agg_bar_ts_utc = CASE
            WHEN s.task_kind = 'rollup'
                THEN tickagg.agg_bootstrap_cursor(s.canonical_symbol, s.timeframe, s.agg_start_utc)
            ELSE s.last_agg_bar_ts_utc
        END,
        pending_bucket_end = NULL,
        status = CASE WHEN s.status = 'running' THEN 'idle' ELSE s.status END,
        claim_token = NULL,
        lease_expires_at = NULL,
        running_started_at_utc = NULL,
        next_run_at = now(),
        updated_at = now()
    WHERE s.canonical_symbol = NEW.canonical_symbol AND s.task_kind IN ('rollup', 'gap_scan', 'gap_scan_history');
    IF FOUND THEN
        PERFORM pg_notify('tickagg_work', '');
    END IF;
    UPDATE tickagg.derived_data_bars AS d SET
        deleted_at = now(),
        derivation_version = d.derivation_version + 1,
        change_no = nextval('tickagg.bar_change_seq'),
        updated_at = now()
    FROM tickagg.data_agg_state AS s
    WHERE
        s.canonical_symbol = NEW.canonical_symbol AND s.task_kind = 'rollup'
        AND d.canonical_symbol = s.canonical_symbol AND d.timeframe = s.timeframe AND d.deleted_at IS NULL
        AND d.ts_utc < s.last_agg_bar_ts_utc;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.registry_calendar_changed() IS
'Trigger: a symbol moved to another calendar re-derives its bars from the first bucket under the new calendar.';
