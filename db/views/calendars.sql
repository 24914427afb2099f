-- The market calendars with their sessions in local time and how many holiday
-- and early-close rows each has.
CREATE OR REPLACE VIEW tickagg.calendars AS
SELECT
    c.calendar_code,
    c.description,
    c.time_zone,
    c.session_open_offset,
    c.session_close_offset,
    c.trading_isodows,
    count(h.holiday_date) FILTER (WHERE h.early_close IS NULL) AS holidays,
    count(h.holiday_date) FILTER (WHERE h.early_close IS NOT NULL) AS early_closes,
    min(h.holiday_date) AS first_holiday_row,
    max(h.holiday_date) AS last_holiday_row
FROM tickagg.market_calendars AS c
LEFT JOIN tickagg.market_holidays AS h ON h.calendar_code = c.calendar_code
GROUP BY c.calendar_code
ORDER BY c.calendar_code;
