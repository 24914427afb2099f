-- Undo 0019: the claim walks from the head of the priority order again (the
-- previous code's agg_get_due_tasks does not use the index).
DROP INDEX tickagg.idx_agg_state_priority_due;
