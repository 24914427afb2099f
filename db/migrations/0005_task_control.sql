-- Operator control of tasks (issue 8): `tickagg tasks disable` must survive
-- `tickagg sync`, which otherwise re-enables every task the registry wants.
-- Set and cleared only by agg_task_set_enabled.
ALTER TABLE tickagg.data_agg_state
ADD COLUMN disabled_by_user boolean NOT NULL DEFAULT false;
