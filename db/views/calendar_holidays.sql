-- Holidays (closed all day) and early closes (local close time) per calendar.
CREATE OR REPLACE VIEW tickagg.calendar_holidays AS
SELECT
    h.calendar_code,
    h.holiday_date,
    CASE WHEN h.early_close IS NULL THEN 'holiday' ELSE 'early_close' END AS kind,
    h.early_close,
    h.description
FROM tickagg.market_holidays AS h
ORDER BY h.calendar_code, h.holiday_date;
