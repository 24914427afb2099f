"""`tickagg run`: until-idle exits 0 and materialises derived bars; SIGTERM
exits 0 and leaves no task running; SQLSTATE mapping."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from runner import db, errors, queries
from runner.ingest import ingest_rows
from runner.synthetic import SymbolSpec, generate

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def _tickagg(dsn: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "TICKAGG_DSN": dsn, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _load_symbol(dsn: str, days: int, end: dt.datetime) -> str:
    """Register a test-env crypto symbol, load `days` of 1m bars, sync."""
    sym = f"L{uuid.uuid4().hex[:8].upper()}"
    start = end - dt.timedelta(days=days)
    spec = SymbolSpec(sym, "crypto_24x7", 100.0, 2, 0.001, 10, "crypto")
    rows = (
        (i + 2, b[0], b[1].isoformat(), *b[2:], None, None)
        for i, b in enumerate(generate(spec, start, end, random.Random(7), hole_rate_per_day=0))
    )
    with db.connect(dsn) as conn:
        with conn.transaction():
            queries.register_symbol(
                conn, sym, "crypto_24x7", asset_class="crypto", active=False, test_active=True
            )
        res = ingest_rows(conn, rows, "test.csv", "polygon_historical")
        assert res["rows_rejected"] == 0, res
        with conn.transaction():
            queries.sync_agg_state_from_registry(conn, "test", start)
    return sym


def _tasks(dsn: str, sym: str) -> list[dict]:
    with db.connect(dsn) as conn:
        return [t for t in queries.task_status(conn) if t["canonical_symbol"] == sym]


def test_run_until_idle_materialises_bars(dsn):
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 2, end)
    proc = _tickagg(
        dsn,
        "--env",
        "test",
        "--log-format",
        "json",
        "run",
        "--until-idle",
        "--workers",
        "2",
        "--poll-max",
        "1",
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    tasks = _tasks(dsn, sym)
    rollups = {t["timeframe"]: t for t in tasks if t["task_kind"] == "rollup"}
    assert {"5m", "1h", "1d"} <= rollups.keys()
    assert all(t["status"] == "idle" for t in tasks), tasks
    assert rollups["5m"]["bars_written_total"] >= 2 * 24 * 12 - 12
    assert rollups["1h"]["bars_written_total"] >= 2 * 24 - 1
    # one JSON object per log line, task lines carry run id + task identity
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    task_lines = [x for x in lines if x.get("symbol") == sym]
    assert task_lines and all(
        x.get("run_id") and x.get("timeframe") and x.get("kind") for x in task_lines
    )


def test_run_until_idle_exits_non_zero_while_work_is_left(dsn, conn):
    """`ingest && run --until-idle && export` must not go on with incomplete bars:
    a task still leased by a crashed runner, and runs that failed (then back off),
    make --until-idle exit 5 with a summary of what is left."""
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    # a runner that died holding the 1h rollup: its lease runs for ten more minutes
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '10 minutes', running_started_at_utc = now()"
        " WHERE canonical_symbol = %s AND timeframe = '1h' AND task_kind = 'rollup'",
        (sym,),
    )
    # and every indicators run fails (a setting out of range)
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '1' WHERE setting_key = 'indicator_rsi_period'"
    )
    # it waits for the leased task one lease (--lease-seconds) plus --others-grace
    # (default 30 s), then says so
    out, err = _tickagg(
        dsn, "--env", "test", "run", "--until-idle", "--lease-seconds", "3", "--others-grace", "1"
    ).communicate(timeout=180)
    assert "incomplete:" in err, err[-3000:]
    (line,) = [x for x in err.splitlines() if x.startswith("incomplete:")]
    assert "runs failed" in line and "rollup: 1 leased" in line, line
    assert "indicators:" in line and ("backing off" in line or "given up" in line), line

    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '14'"
        " WHERE setting_key = 'indicator_rsi_period'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'idle', claim_token = NULL,"
        " lease_expires_at = NULL, running_started_at_utc = NULL, transient_fail_streak = 0,"
        " hard_fail_streak = 0, next_run_at = now() WHERE canonical_symbol = %s",
        (sym,),
    )
    proc = _tickagg(dsn, "--env", "test", "run", "--until-idle")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]


def test_run_until_idle_takes_a_crashed_runners_task_once_its_lease_ends(dsn, conn):
    """A crashed runner's task stays 'running' after its lease ends, claimable but
    due by no schedule: --until-idle, waiting for it, runs it then and exits 0
    (it used to wait out one lease plus 30 s and exit 5, "rollup: 1 leased")."""
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    caught_up = _tickagg(dsn, "--env", "test", "run", "--until-idle")
    assert caught_up.wait(timeout=180) == 0, caught_up.communicate()[1][-3000:]
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '5 seconds', running_started_at_utc = now(),"
        " next_run_at = now() + interval '1 day'"
        " WHERE canonical_symbol = %s AND timeframe = '1h' AND task_kind = 'rollup'",
        (sym,),
    )
    runs = (
        "SELECT count(*) AS n FROM tickagg.ops_runlog"
        " WHERE canonical_symbol = %s AND timeframe = '1h'"
    )
    before = conn.execute(runs, (sym,)).fetchone()["n"]
    proc = _tickagg(dsn, "--env", "test", "run", "--until-idle", "--lease-seconds", "5")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert conn.execute(runs, (sym,)).fetchone()["n"] == before + 1
    assert all(t["status"] == "idle" for t in _tasks(dsn, sym))


def test_sigterm_exits_0_and_leaves_nothing_running(dsn):
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    syms = [_load_symbol(dsn, 7, end) for _ in range(2)]
    # small batches keep tasks coming back (continue=true), so SIGTERM lands mid-work
    proc = _tickagg(
        dsn, "--env", "test", "run", "--workers", "2", "--max-windows", "5", "--poll-max", "1"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(t["bars_written_total"] for s in syms for t in _tasks(dsn, s)):
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    else:
        pytest.fail("runner never wrote bars")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    running = [t for s in syms for t in _tasks(dsn, s) if t["status"] == "running"]
    assert running == []


def test_sqlstate_mapping(conn):
    cases = {
        "TK001": errors.LeaseLost,
        "TK002": errors.UnknownSymbol,
        "TK003": errors.UnknownTimeframeOrCalendar,
        "TK004": errors.InvalidArgument,
        "TK005": errors.HierarchyDoesNotNest,
        "40001": errors.TransientDatabaseError,
        "53300": errors.TransientDatabaseError,
        "22023": errors.TickaggDatabaseError,
    }
    for code, cls in cases.items():
        with pytest.raises(cls) as info:
            with errors.wrap_exceptions():
                conn.execute(
                    "DO $$BEGIN RAISE EXCEPTION 'boom %', 1 USING ERRCODE = '"
                    + code
                    + "', HINT = 'do this'; END$$"
                )
        conn.rollback()
        assert type(info.value) is cls
        assert info.value.sqlstate == code
        assert info.value.hint == "do this"
        assert "boom 1" in info.value.message
    # statement timeout (57014) is transient
    with pytest.raises(errors.TransientDatabaseError) as info:
        with errors.wrap_exceptions(), conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '50ms'")
            conn.execute("SELECT pg_sleep(2)")
    conn.rollback()
    assert info.value.sqlstate == "57014"


def test_mask_dsn():
    assert db.mask_dsn("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "s3cret" not in db.mask_dsn("host=h user=u password=s3cret dbname=d")
    assert "s3cret" not in db.mask_dsn("postgresql://u@h/db?password=s3cret&x=1")


def test_run_warns_when_the_command_line_dsn_holds_a_password(dsn):
    """ps shows a daemon's arguments to every local user: a password in --dsn leaks.
    The same DSN through TICKAGG_DSN (not visible in ps) gives no warning."""
    with_password = f"{dsn} password=s3cretPW"  # the test server trusts local users
    cmd = [sys.executable, "-m", "runner.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    on_line = subprocess.run(
        [*cmd, "--dsn", with_password, "run", "--until-idle"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert on_line.returncode == 0, on_line.stderr
    assert "holds a password" in on_line.stderr
    assert "s3cretPW" not in on_line.stderr + on_line.stdout
    from_env = subprocess.run(
        [*cmd, "run", "--until-idle"],
        env={**env, "TICKAGG_DSN": with_password}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert from_env.returncode == 0, from_env.stderr
    assert "holds a password" not in from_env.stderr


def _runner(dsn: str, **kw):
    from runner.loop import Runner, RunnerConfig

    cfg = RunnerConfig(dsn=dsn, env="test", lease_seconds=60, statement_timeout=30, **kw)
    return Runner(cfg, db.make_pool(dsn, max_size=2))


def test_claimed_task_is_released_on_stop(dsn):
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    r = _runner(dsn)
    try:
        task = r._claim()
        assert task is not None and task["claim_token"] is not None
        claimed = [t for t in _tasks(dsn, sym) if t["status"] == "running"]
        assert len(claimed) == 1
        r.request_stop("test")
        r._release(task)
    finally:
        r.pool.close()
    assert r.stats.released == 1
    assert [t for t in _tasks(dsn, sym) if t["status"] == "running"] == []
    assert all(t["runs_total"] == 0 for t in _tasks(dsn, sym))


def test_unknown_task_kind_is_a_hard_failure(dsn, monkeypatch):
    from runner import loop

    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    # the runner knows no kinds at all
    monkeypatch.setattr(loop, "HANDLERS", {})
    monkeypatch.setattr(loop, "SELF_FINISHING_HANDLERS", {})
    r = _runner(dsn)
    try:
        task = r._claim()
        r.execute(task)
    finally:
        r.pool.close()
    assert r.stats.tasks_failed == 1
    (row,) = [
        t
        for t in _tasks(dsn, sym)
        if (t["timeframe"], t["task_kind"]) == (task["timeframe"], task["task_kind"])
    ]
    assert row["status"] != "running"
    assert row["hard_fail_streak"] == 1
    assert "no handler for task_kind 'rollup'" in row["last_error"]


def _own_pool_runner(dsn: str):
    """A runner with a pool of its own, as `tickagg run` has: rollup runs are one
    statement there, which claims the next task too."""
    from runner.loop import Runner, RunnerConfig

    r = Runner(RunnerConfig(dsn=dsn, env="test", lease_seconds=60, statement_timeout=30))
    r._ensure_pool()
    return r


def _only_5m_due(dsn: str, sym: str) -> None:
    """Rollups only (a derived bar written wakes its indicators task), and of them
    only 5m due."""
    with db.connect(dsn) as conn:
        conn.execute(
            "UPDATE tickagg.data_agg_state SET enabled = (task_kind = 'rollup'),"
            " next_run_at = CASE WHEN timeframe = '5m' THEN next_run_at"
            " ELSE now() + interval '1 day' END"
            " WHERE canonical_symbol = %s",
            (sym,),
        )


def _running(dsn: str, sym: str) -> list[dict]:
    with db.connect(dsn) as conn:
        return conn.execute(
            "SELECT timeframe, task_kind, claim_token FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND status = 'running'",
            (sym,),
        ).fetchall()


def test_rollup_run_claims_the_next_task_after_the_run(dsn):
    """The statement that runs a rollup also claims the runner's next task, after
    the run: the 15m task that the 5m run made due (its source moved on) is the one
    it claims, committed with the run; a claim made before the run would find none.
    The bars are the eight days up to a Monday 00:00 UTC, so that a whole week is
    closed whatever the time of day (a day ending now-1d made 1w's part depend on
    the clock)."""
    now = dt.datetime.now(UTC)
    monday = now - dt.timedelta(days=now.weekday())
    end = monday.replace(hour=0, minute=0, second=0, microsecond=0)
    if now - end < dt.timedelta(days=1):  # this Monday's 00:00, at least a day ago
        end -= dt.timedelta(days=7)
    sym = _load_symbol(dsn, 8, end)
    _only_5m_due(dsn, sym)
    r = _own_pool_runner(dsn)
    try:
        task = r._claim()
        assert (task["timeframe"], task["task_kind"]) == ("5m", "rollup")
        claimed = r.execute(task, claim_next=True)
        assert [(t["timeframe"], t["task_kind"]) for t in claimed] == [("15m", "rollup")]
        assert _running(dsn, sym) == [
            {"timeframe": "15m", "task_kind": "rollup", "claim_token": claimed[0]["claim_token"]}
        ]
        # each claimed task runs like any other and claims the level above it, up to
        # the top, whose run's claim finds nothing due: []
        order = ["5m"]
        while claimed:
            order.append(claimed[0]["timeframe"])
            claimed = r.execute(claimed[0], claim_next=True)
        assert claimed == []
        assert order == ["5m", "15m", "30m", "1h", "4h", "1d", "1w"]
        assert r.run_due() == []
    finally:
        r.pool.close()
    assert r.stats.tasks_failed == 0 and _running(dsn, sym) == []
    tasks = {t["timeframe"]: t for t in _tasks(dsn, sym) if t["task_kind"] == "rollup"}
    assert tasks["1h"]["bars_written_total"] >= 23


def test_worker_releases_the_task_its_last_run_claimed_when_stopping(dsn, monkeypatch):
    """A stop requested while a run is in flight: the task that run's statement
    claimed is released, not left running until its lease expires."""
    from runner.loop import Runner

    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    _only_5m_due(dsn, sym)
    r = _own_pool_runner(dsn)
    real_execute = Runner.execute

    def execute_then_stop(self, task, claim_next=False):
        claimed = real_execute(self, task, claim_next=claim_next)
        assert claimed and claimed[0]["timeframe"] == "15m"
        self.request_stop("test")
        return claimed

    monkeypatch.setattr(Runner, "execute", execute_then_stop)
    try:
        r._worker(0)
    finally:
        r.pool.close()
    assert (r.stats.tasks_succeeded, r.stats.released) == (1, 1)
    assert _running(dsn, sym) == []
    tasks = {t["timeframe"]: t for t in _tasks(dsn, sym) if t["task_kind"] == "rollup"}
    assert tasks["5m"]["runs_total"] == 1 and tasks["15m"]["runs_total"] == 0


def test_a_claim_in_flight_counts_as_busy(dsn, monkeypatch):
    """A worker's claim is counted busy from before it is sent (an idle check in
    another worker must not stop the runner while a task is being claimed), and
    uncounted when it claims nothing or fails."""
    from runner.loop import Runner

    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    _only_5m_due(dsn, sym)
    r = _own_pool_runner(dsn)
    busy_while_claiming = []
    real_claim_rows = Runner._claim_rows

    def spy(self):
        busy_while_claiming.append(self._busy)
        return real_claim_rows(self)

    monkeypatch.setattr(Runner, "_claim_rows", spy)
    try:
        (task,) = r._claim_counted()
        assert (busy_while_claiming, r._busy) == ([1], 1)
        assert r._claim_counted() == [] and r._busy == 1  # nothing else due

        def broken(self):
            raise errors.TickaggDatabaseError("claim broke")

        monkeypatch.setattr(Runner, "_claim_rows", broken)
        with pytest.raises(errors.TickaggDatabaseError):
            r._claim_counted()
        assert r._busy == 1
        r._release(task)
    finally:
        r.pool.close()


def test_a_task_claimed_by_a_run_is_released_if_its_bookkeeping_fails(dsn, monkeypatch):
    from runner.loop import Runner

    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    _only_5m_due(dsn, sym)
    r = _own_pool_runner(dsn)

    def broken(self, *args):
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(Runner, "_record_success", broken)
    try:
        with pytest.raises(RuntimeError):
            r.execute(r._claim(), claim_next=True)
    finally:
        r.pool.close()
    # the 5m run committed; the 15m task its statement claimed is idle again
    assert r.stats.released == 1 and _running(dsn, sym) == []
    tasks = {t["timeframe"]: t for t in _tasks(dsn, sym) if t["task_kind"] == "rollup"}
    assert tasks["5m"]["runs_total"] == 1 and tasks["5m"]["bars_written_total"] > 0


def test_a_runs_own_notify_does_not_make_its_worker_claim_again(dsn):
    """A rollup run's writes NOTIFY tickagg_work; the worker that ran it has
    already seen that work (the run's statement claims the next task after it), so
    the notification must not wake it into a claim that finds nothing (issue 18
    item 6: one wasted round trip per run). A notification from another session
    still wakes it."""
    from runner.loop import Runner, RunnerConfig

    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sym = _load_symbol(dsn, 1, end)
    with db.connect(dsn) as conn:  # one task, not due yet: the 5m rollup
        conn.execute(
            "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 day',"
            " enabled = (task_kind = 'rollup' AND timeframe = '5m') WHERE canonical_symbol = %s",
            (sym,),
        )

    claims: list[list[dict]] = []

    class CountingRunner(Runner):
        def _claim_rows(self):
            rows = super()._claim_rows()
            claims.append(rows)
            return rows

    r = CountingRunner(
        RunnerConfig(dsn=dsn, env="test", lease_seconds=60, statement_timeout=30, poll_max=60)
    )
    thread = threading.Thread(target=r.run, kwargs={"install_signals": False})
    thread.start()
    try:
        # quiet: the listener is connected and the worker asleep after finding nothing
        deadline = time.monotonic() + 60
        while not (r._wake_seq >= 1 and claims and r._busy == 0):
            assert time.monotonic() < deadline, "runner never settled"
            time.sleep(0.05)
        time.sleep(0.5)
        settled = len(claims)
        with db.connect(dsn) as conn:  # work from another session, and its NOTIFY
            conn.execute(
                "UPDATE tickagg.data_agg_state SET next_run_at = now()"
                " WHERE canonical_symbol = %s AND timeframe = '5m'",
                (sym,),
            )
            conn.execute("NOTIFY tickagg_work")
        while r.stats.tasks_run < 1:
            assert time.monotonic() < deadline, "the 5m task never ran"
            time.sleep(0.05)
        time.sleep(1.0)  # the run's own notification reaches the listener meanwhile
    finally:
        r.request_stop("test over")
        thread.join(30)
    after = claims[settled:]
    assert [len(c) for c in after] == [1], "one claim (the 5m task), none found empty"
    assert r.stats.tasks_run == 1 and r.stats.tasks_failed == 0
    assert r.stats.bars_written > 0, "the run wrote bars, so its statement notified"
