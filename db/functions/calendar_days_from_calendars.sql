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
    PERFORM tickagg.calendar_days_refresh(NEW.calendar_code);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_from_calendars() IS
'Trigger: recompute the stored sessions of a calendar that was added or changed.';
