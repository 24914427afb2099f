-- Serialise the writers of one series' derived bars that hold no task-row lock
-- while they write: a rollup task's own run (catchup_aggregation_range) and a
-- rebuild of the same symbol and timeframe (derived_rebuild_range). Each takes
-- this lock first, before any row lock of its transaction, so the one that
-- comes second waits holding nothing and then reads what the first committed:
-- the two never rewrite a bucket from different snapshots, and never deadlock
-- on the task row (the run locks it only at agg_finish, after its writes). Held
-- until the transaction ends; a hash collision between two series only makes
-- one wait for the other.
CREATE OR REPLACE FUNCTION tickagg.rollup_series_lock(
    p_canonical_symbol text,
    p_timeframe text
)
RETURNS void
LANGUAGE sql
VOLATILE
AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('tickagg.rollup:' || p_canonical_symbol || ' ' || p_timeframe, 0))
$$;

COMMENT ON FUNCTION tickagg.rollup_series_lock(text, text) IS
'Wait for, then hold until commit, the lock that serialises a rollup task''s own run and a rebuild of one series.';
