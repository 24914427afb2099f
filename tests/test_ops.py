"""Operations: the run log (ops_runlog, ops_log_run, retention) and the Prometheus
endpoint of `tickagg run --metrics-port` scraped over HTTP during a real run."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row
from test_runner_loop import _load_symbol, _runner, _tickagg

from runner import db, queries
from runner.embedded_pg import free_port
from runner.metrics import Metrics, readiness

UTC = dt.UTC


def _end() -> dt.datetime:
    return dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)


def _runlog(conn) -> list[dict]:
    return conn.execute("SELECT * FROM tickagg.ops_runlog ORDER BY started_at").fetchall()


def test_runner_logs_every_run_under_its_log_run_id(dsn, conn):
    sym = _load_symbol(dsn, 1, _end())
    proc = _tickagg(dsn, "--env", "test", "--log-format", "json", "run", "--until-idle")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    rows = _runlog(conn)
    assert rows and all(r["outcome"] == "success" for r in rows)
    # one row per execution: the task table counts the same runs and bars
    tasks = conn.execute(
        "SELECT sum(runs_total) AS runs, sum(bars_written_total) AS bars"
        " FROM tickagg.data_agg_state WHERE canonical_symbol = %s",
        (sym,),
    ).fetchone()
    assert len(rows) == tasks["runs"]
    assert sum(r["bars_written"] for r in rows) == tasks["bars"]
    assert all(r["finished_at"] >= r["started_at"] for r in rows)
    # the run id of every task log line is the run log's key
    logged = {
        x["run_id"] for x in map(json.loads, filter(str.strip, err.splitlines())) if x.get("run_id")
    }
    assert logged == {str(r["run_id"]) for r in rows}
    recent = conn.execute("SELECT * FROM tickagg.ops_runlog_recent").fetchall()
    assert recent[0]["started_at"] == max(r["started_at"] for r in rows)
    assert all(r["duration"] >= dt.timedelta(0) for r in recent)


def test_failed_run_is_logged_with_its_error(dsn, conn, monkeypatch):
    from runner import loop

    _load_symbol(dsn, 1, _end())
    monkeypatch.setattr(loop, "HANDLERS", {})
    monkeypatch.setattr(loop, "SELF_FINISHING_HANDLERS", {})
    r = _runner(dsn)
    r.metrics = Metrics()
    try:
        task = r._claim()
        r.execute(task)
    finally:
        r.pool.close()
    (row,) = _runlog(conn)
    assert (row["timeframe"], row["task_kind"], row["outcome"]) == (
        task["timeframe"],
        task["task_kind"],
        "hard",
    )
    assert "no handler for task_kind" in row["error"]
    assert row["bars_written"] == 0
    assert r.metrics.tasks_run.labels(kind="rollup", outcome="hard")._value.get() == 1


def _log_run(c, run_id, started_at, outcome="success"):
    return c.execute(
        "SELECT tickagg.ops_log_run(p_run_id => %s, p_canonical_symbol => 'X', p_timeframe => '5m',"
        " p_task_kind => 'rollup', p_started_at => %s, p_outcome => %s) AS r",
        (run_id, started_at, outcome),
    ).fetchone()["r"]


def test_runlog_retention_and_grants(conn, role_dsn):
    now = dt.datetime.now(UTC)
    old, kept = uuid.uuid4(), uuid.uuid4()
    for rid, age in ((kept, dt.timedelta(days=6)), (old, dt.timedelta(days=8))):  # prune runs first
        _log_run(conn, rid, now - age)
    # the runner role logs through the function, never by writing the table
    with psycopg.connect(role_dsn(), autocommit=True, row_factory=dict_row) as rc:
        res = _log_run(rc, uuid.uuid4(), now)
        assert res["pruned"] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rc.execute(
                "INSERT INTO tickagg.ops_runlog (run_id, canonical_symbol, timeframe, task_kind,"
                " started_at, outcome) VALUES (gen_random_uuid(), 'X', '5m', 'rollup', now(),"
                " 'success')"
            )
        assert len(rc.execute("SELECT * FROM tickagg.ops_runlog_recent").fetchall()) == 2
        with pytest.raises(psycopg.DatabaseError) as info:
            _log_run(rc, uuid.uuid4(), now, "bogus")
        assert info.value.sqlstate == "TK004"
    ids = {r["run_id"] for r in _runlog(conn)}
    assert old not in ids and kept in ids and len(ids) == 2
    # a shorter retention applies on the next call
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '1 day' WHERE setting_key = 'runlog_retention'"
    )
    assert _log_run(conn, uuid.uuid4(), now)["pruned"] == 1
    assert kept not in {r["run_id"] for r in _runlog(conn)}


def test_gauges_and_readiness_as_runner_role(dsn, conn, role_dsn, empty_dsn):
    sym = _load_symbol(dsn, 1, _end())
    conn.execute(
        "INSERT INTO tickagg.gap_ledger (canonical_symbol, gap_start, gap_end, missing_minutes,"
        " detected_by) VALUES (%s, now() - interval '2 days', now() - interval '2 days'"
        " + interval '10 minutes', 10, 'manual')",
        (sym,),
    )
    m = Metrics()
    with db.connect(role_dsn()) as rc:
        m.refresh(rc)
        statuses = [t["status"] for t in queries.task_status(rc)]
    assert m.tasks.labels(status="idle")._value.get() == statuses.count("idle")
    assert m.gaps_open._value.get() == 1
    assert 2 * 86400 - 60 <= m.oldest_gap_age._value.get() <= 2 * 86400 + 600
    assert m.lag_max.labels(timeframe="5m")._value.get() > 86400  # nothing built yet
    assert m.coverage_24h.labels(symbol=sym)._value.get() >= 0
    backlog = conn.execute(
        "SELECT CASE WHEN to_regclass('tickagg.export_backlog') IS NULL THEN 0 ELSE"
        " (SELECT coalesce(sum(backlog), 0) FROM tickagg.export_backlog) END AS n"
    ).fetchone()["n"]
    assert m.export_backlog._value.get() == backlog
    assert readiness(role_dsn()) == (True, "ok")
    ok, reason = readiness(empty_dsn)
    assert not ok and "pending migrations" in reason


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - local test URL
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label pairs: value} of one metric family in Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_endpoint_matches_the_database(dsn, conn):
    _load_symbol(dsn, 2, _end())
    port = free_port()
    proc = _tickagg(
        dsn,
        "--env",
        "test",
        "run",
        "--workers",
        "2",
        "--poll-max",
        "1",
        "--metrics-port",
        str(port),
        "--metrics-interval",
        "1",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # the endpoint and the run log converge once the runner has caught up
        deadline = time.monotonic() + 90
        matched = False
        while time.monotonic() < deadline and not matched:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                code, text = _get(base + "/metrics")
            except OSError:
                time.sleep(0.2)
                continue
            runs = _samples(text, "tickagg_tasks_run_total")
            bars = _samples(text, "tickagg_bars_written_total")
            db_runs = {
                (("kind", r["task_kind"]), ("outcome", r["outcome"])): float(r["n"])
                for r in conn.execute(
                    "SELECT task_kind, outcome, count(*) AS n FROM tickagg.ops_runlog GROUP BY 1, 2"
                ).fetchall()
            }
            db_bars = {
                (("timeframe", r["timeframe"]),): float(r["n"])
                for r in conn.execute(
                    "SELECT timeframe, sum(bars_written) AS n FROM tickagg.ops_runlog"
                    " WHERE outcome = 'success' GROUP BY 1"
                ).fetchall()
            }
            matched = (
                bool(db_runs) and runs == db_runs and bars == db_bars and sum(db_bars.values()) > 0
            )
            if not matched:
                time.sleep(0.3)
        assert matched, (runs, db_runs, bars, db_bars)
        assert _samples(text, "tickagg_metrics_last_refresh_timestamp_seconds")
        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/readyz") == (200, "ok\n")
        assert _get(base + "/nope")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE status = 'running'"
        ).fetchone()["n"]
        == 0
    )


def test_status_without_a_tty_has_no_colour_and_a_health_line(dsn):
    _load_symbol(dsn, 1, _end())
    proc = _tickagg(dsn, "status")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "\x1b[" not in out
    (line,) = [x for x in out.splitlines() if x.startswith("health (aggregation_health):")]
    assert "HEALTHY=" in line and "WARNING=" in line and "DELAYED=" in line
    proc = _tickagg(dsn, "status", "--json")
    out, err = proc.communicate(timeout=60)
    data = json.loads(out)
    assert sum(data["health"].values()) == sum(r["tasks"] for r in data["summary"]) > 0
    assert "tasks" not in data  # every task only on request


def test_status_summarises_a_market_and_names_the_tasks_that_need_a_look(dsn, conn):
    """Thousands of tasks are read per kind and timeframe; failing tasks by name;
    every task with --all, one symbol's with --symbol."""
    conn.execute(
        "INSERT INTO tickagg.core_asset_registry_all (canonical_symbol, calendar_code)"
        " SELECT 'MK' || i, 'crypto_24x7' FROM generate_series(1, 60) AS i"
    )
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', now() - interval '1 day')")
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'hard_failed', hard_fail_streak = 3,"
        " last_error = 'boom' WHERE canonical_symbol = 'MK7' AND timeframe = '1h'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET transient_fail_streak = 2"
        " WHERE canonical_symbol = 'MK9' AND timeframe = '4h' AND task_kind = 'rollup'"
    )
    total = conn.execute("SELECT count(*) AS n FROM tickagg.data_agg_state").fetchone()["n"]

    out, err = _tickagg(dsn, "status").communicate(timeout=60)
    lines = out.splitlines()
    rollup_1h = [x.split() for x in lines if x.split()[:2] == ["rollup", "1h"]]
    assert rollup_1h and rollup_1h[0][2] == "60" and rollup_1h[0][7] == "1", out
    named = [x for x in lines if x.startswith(("MK7 ", "MK9 "))]
    assert len(named) == 3, out  # MK7's 1h rollup and indicators, MK9's 4h rollup
    assert f"tasks={total}," in out and "hard_failed=2" in out
    assert not [x for x in lines if x.startswith("MK1 ")]  # healthy tasks are not listed

    data = json.loads(_tickagg(dsn, "status", "--json").communicate(timeout=60)[0])
    assert data["attention_total"] == 3
    # "is it caught up?": the furthest cursor and the tasks still due per level
    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET last_agg_bar_ts_utc = '2031-01-01', next_run_at = '2100-01-01'"
        " WHERE timeframe = '1d' AND task_kind = 'rollup' AND canonical_symbol <> 'MK3'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() - interval '1 minute'"
        " WHERE timeframe = '1d' AND task_kind = 'rollup' AND canonical_symbol = 'MK3'"
    )
    data = json.loads(_tickagg(dsn, "status", "--json").communicate(timeout=60)[0])
    (daily,) = [r for r in data["summary"] if (r["task_kind"], r["timeframe"]) == ("rollup", "1d")]
    assert daily["newest_cursor"].startswith("2031-01-01") and daily["due"] == 1
    assert {(r["canonical_symbol"], r["timeframe"]) for r in data["attention"]} == {
        ("MK7", "1h"),
        ("MK9", "4h"),
    }
    everything = json.loads(_tickagg(dsn, "status", "--json", "--all").communicate(timeout=60)[0])
    assert len(everything["tasks"]) == total
    one = json.loads(
        _tickagg(dsn, "status", "--json", "--symbol", "MK9").communicate(timeout=60)[0]
    )
    assert {t["canonical_symbol"] for t in one["tasks"]} == {"MK9"} and len(one["tasks"]) == 16
    out, _ = _tickagg(dsn, "status", "--symbol", "MK9").communicate(timeout=60)
    assert len([x for x in out.splitlines() if x.startswith("MK9 ")]) == 16
