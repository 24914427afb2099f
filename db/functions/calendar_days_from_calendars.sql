-- Row trigger on market_calendars: a new or changed calendar gets its sessions
-- recomputed in calendar_days (a deleted one loses them by the foreign key).
-- SECURITY DEFINER: whoever may change a calendar may refresh its sessions.
CREATE OR REPLACE FUNCTION tickagg.calendar_days_from_calendars()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    -- a new description changes no session (a renamed code cascades by the key)
    IF TG_OP = 'UPDATE' AND (
        OLD.time_zone, OLD.session_open_offset, OLD.session_close_offset, OLD.trading_isodows
    ) IS NOT DISTINCT FROM (
        NEW.time_zone, NEW.session_open_offset, NEW.session_close_offset, NEW.trading_isodows
    ) THEN
        RETURN NULL;
    END IF;
    PERFORM tickagg.calendar_days_refresh(NEW.calendar_code);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_from_calendars() IS
'Trigger: recompute the stored sessions of a calendar that was added or changed.';
