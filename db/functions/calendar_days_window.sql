-- The trading dates calendar_days holds for every calendar. Sessions of other
-- dates are computed on each call (calendar_sessions).
CREATE OR REPLACE FUNCTION tickagg.calendar_days_window()
RETURNS daterange
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
RETURN daterange('1990-01-01', '2070-01-01');

COMMENT ON FUNCTION tickagg.calendar_days_window() IS
'The trading dates whose sessions calendar_days keeps; outside them sessions are computed per call.';
