-- Issue 18 item 3 / issue 23 item 11: ticks_retention_run decides by the
-- database clock only. Its p_now let any caller (the runner role included)
-- drop young partitions with a far-future "now"; the new one takes no argument.
DROP FUNCTION IF EXISTS tickagg.ticks_retention_run(timestamptz);
