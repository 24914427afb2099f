-- Undo 0020. The rewinds it merged stay merged: the earliest of a series is
-- all any run of the previous code needs from them.
DROP INDEX tickagg.idx_calendar_days_open;
