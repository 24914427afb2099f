-- Every migrate recomputes the stored sessions: a new tickagg version or new
-- time-zone rules (tzdata) may compute them differently. Rows that come out the
-- same are not written, so a second migrate changes nothing.
SELECT tickagg.calendar_days_refresh(c.calendar_code)
FROM tickagg.market_calendars AS c
ORDER BY c.calendar_code;
