"""Recording a failed run is retried in place when it meets a deadlock or a
serialization failure (issue 23 item 8): before, the runner logged `could not
record failure (lease will expire)` and the task stayed `running` for its whole
lease, unrecorded."""

from __future__ import annotations

import datetime as dt

import helpers as h
from oracle import Bar1m
from test_failures import FAILING_TRIGGER, setup_symbol, task

UTC = dt.UTC

# The first two run log rows of a failure meet a deadlock (a sequence counts the
# attempts: it is not rolled back with them).
DEADLOCKED_RECORDING = """
CREATE SEQUENCE public.recording_attempts;
CREATE FUNCTION public.deadlock_twice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome IN ('hard', 'transient') AND nextval('public.recording_attempts') <= 2 THEN
        RAISE EXCEPTION 'simulated deadlock while recording a failure' USING ERRCODE = '40P01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deadlock_twice BEFORE INSERT ON tickagg.ops_runlog
FOR EACH ROW EXECUTE FUNCTION public.deadlock_twice();
"""


def test_a_failure_whose_recording_deadlocks_is_recorded_by_a_retry(dsn, conn):
    conn.execute(FAILING_TRIGGER.replace("%(code)s", "'XX001'"))
    conn.execute(DEADLOCKED_RECORDING)
    setup_symbol(conn, "BAD")
    bar = Bar1m(10.0, 11.0, 9.0, 10.5, 1.0)
    h.insert_bars(conn, "BAD", {dt.datetime(2025, 3, 4, tzinfo=UTC): bar})
    p = h.run_cli(dsn, "run", "--until-idle", "--lease-seconds", "20")
    assert "could not record failure" not in p.stderr, p.stderr[-3000:]
    s = task(conn, "BAD")
    assert (s["status"], s["hard_fail_streak"]) == ("idle", 1), dict(s)
    assert "simulated storage failure" in s["last_error"]
    attempts = conn.execute("SELECT last_value AS n FROM public.recording_attempts").fetchone()
    assert attempts["n"] >= 3
    logged = conn.execute(
        "SELECT count(*) AS n FROM tickagg.ops_runlog"
        " WHERE canonical_symbol = 'BAD' AND outcome = 'hard'"
    ).fetchone()["n"]
    assert logged == 1
