-- Operations (issue 8): the run log and its retention setting.
-- One row per task execution, written by the runner through tickagg.ops_log_run
-- (SECURITY DEFINER) in the transaction that finishes the task, so a run that
-- rolled back leaves no success row behind.
CREATE TABLE tickagg.ops_runlog (
    run_id uuid PRIMARY KEY,
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL,
    task_kind text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    outcome text NOT NULL CHECK (outcome IN ('success', 'transient', 'hard', 'lease_lost')),
    bars_written bigint NOT NULL DEFAULT 0 CHECK (bars_written >= 0),
    cursor_from timestamptz,
    cursor_to timestamptz,
    error text
);

-- Retention deletes the oldest rows first; ops_runlog_recent reads the newest.
CREATE INDEX idx_ops_runlog_started ON tickagg.ops_runlog (started_at);

CREATE INDEX idx_ops_runlog_task ON tickagg.ops_runlog (canonical_symbol, timeframe, task_kind, started_at);

INSERT INTO tickagg.settings (setting_key, setting_value, description) VALUES
('runlog_retention', '7 days', 'ops_runlog rows older than this are deleted by ops_log_run');
