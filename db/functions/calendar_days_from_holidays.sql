-- Trigger on market_holidays: a holiday or early close added, changed or removed
-- changes the session of its date, recomputed in calendar_days (per row); a
-- TRUNCATE recomputes every calendar (per statement).
-- SECURITY DEFINER: calendar_set_holiday's callers may not write calendar_days.
CREATE OR REPLACE FUNCTION tickagg.calendar_days_from_holidays()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM tickagg.calendar_days_refresh(c.calendar_code) FROM tickagg.market_calendars AS c;
        RETURN NULL;
    END IF;
    -- an update in place (same calendar and date) refreshes that date once, below
    IF TG_OP = 'DELETE' OR (
        TG_OP = 'UPDATE' AND (OLD.calendar_code, OLD.holiday_date) IS DISTINCT FROM (NEW.calendar_code, NEW.holiday_date)
    ) THEN
        PERFORM tickagg.calendar_days_refresh(OLD.calendar_code, daterange(OLD.holiday_date, OLD.holiday_date, '[]'));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM tickagg.calendar_days_refresh(NEW.calendar_code, daterange(NEW.holiday_date, NEW.holiday_date, '[]'));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tickagg.calendar_days_from_holidays() IS
'Trigger: recompute the stored session of a date whose holiday or early close changed.';
