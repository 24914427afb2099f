-- The claim walks idx_agg_state_due_priority (mandatory, priority, cursor, step)
-- and checks each row's next_run_at in the heap. When the tasks due are all of a
-- low priority (a backlog of gap scans behind 70,000 rollup and indicators tasks
-- with nothing to do), every claim read every task ahead of them: 30-110 ms a claim
-- at 98,000 tasks (bench_live_scale). This index finds the highest priority that
-- has a task due with one probe per priority, so the walk starts there
-- (agg_get_due_tasks).
CREATE INDEX idx_agg_state_priority_due ON tickagg.data_agg_state (task_priority, next_run_at)
WHERE enabled AND status = 'idle';
