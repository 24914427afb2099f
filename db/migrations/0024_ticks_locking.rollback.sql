-- Undo 0024: drop the argument-less ticks_retention_run; the previous code's
-- migrate re-creates its own (with p_now).
DROP FUNCTION IF EXISTS tickagg.ticks_retention_run();
