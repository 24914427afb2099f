-- Scheduling (issue 24): a task runs when it has work, not every minute.
-- pending_bucket_end: the end of the bucket at a rollup task's cursor, per its
-- symbol's calendar (closed market time skipped; see rollup_bucket_end), kept
-- by agg_finish. Writes compare against it instead of computing calendars per
-- row: a source whose data or cursor reaches it makes the task due. NULL: not
-- known yet, any advance of the source makes the task due.
ALTER TABLE tickagg.data_agg_state ADD COLUMN pending_bucket_end timestamptz;

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
(
    'idle_recheck_interval', '1 day',
    'a task with no work waits for an event (a write, its source advancing), at most this long'
),
(
    'gap_scan_quiet_interval', '1 hour',
    'a live gap scan whose symbol got no new 1m bars since its last run runs again after this (silence is a gap too)'
),
(
    'claim_max_wait', '5 minutes',
    'a task due longer than this is claimed first, oldest first, whatever its kind (no starvation)'
),
(
    'claim_aged_share', '0.5',
    'share of claims that take the longest-waiting task (past claim_max_wait) before priority order'
);
