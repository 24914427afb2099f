"""`tickagg tasks enable|disable|reset` as the runner role: round trips through the
CLI, reset of hard_failed only with --force, disabled tasks are not claimed and an
operator's disable survives `tickagg sync` (rollup, gap-scan and export tasks)."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

START = "2025-07-01T00:00:00Z"


@pytest.fixture
def eurusd(conn):
    conn.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', 'fx')")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    conn.execute("SELECT tickagg.sync_export_tasks('prod', %s)", (START,))
    return conn


def _task(conn, timeframe: str, kind: str = "rollup") -> dict:
    return conn.execute(
        "SELECT * FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'EURUSD' AND timeframe = %s AND task_kind = %s",
        (timeframe, kind),
    ).fetchone()


def _ok(dsn: str, *args: str) -> dict:
    out = run_cli(dsn, *args, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _sync(dsn: str) -> None:
    _ok(dsn, "sync", "--start", START)


def test_disable_survives_sync_and_is_not_claimed_then_enable(eurusd, role_dsn):
    runner = role_dsn()
    res = _ok(runner, "tasks", "disable", "EURUSD", "--timeframe", "5m", "--kind", "rollup")
    assert res["tasks_changed"] == 1 and res["tasks"][0]["timeframe"] == "5m"
    t = _task(eurusd, "5m")
    assert (t["enabled"], t["disabled_by_user"]) == (False, True)

    # status says who switched it off, in JSON and in the table
    status = _ok(runner, "status", "--json", "--symbol", "EURUSD")
    row = next(r for r in status["tasks"] if (r["timeframe"], r["task_kind"]) == ("5m", "rollup"))
    assert (row["enabled"], row["disabled_by_user"]) == (False, True)
    table = run_cli(runner, "status", "--symbol", "EURUSD", timeout=60).stdout
    assert [ln for ln in table.splitlines() if " 5m " in ln and " rollup " in ln and " user " in ln]
    assert not [ln for ln in table.splitlines() if " 15m " in ln and " user " in ln]

    _sync(runner)  # sync re-enables what the registry wants, but not an operator's disable
    eurusd.execute("SELECT tickagg.sync_export_tasks('prod', %s)", (START,))
    assert _task(eurusd, "5m")["enabled"] is False
    assert _task(eurusd, "15m")["enabled"] is True

    claimed = eurusd.execute(
        "SELECT timeframe, task_kind FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
    ).fetchall()
    assert claimed and ("5m", "rollup") not in {(r["timeframe"], r["task_kind"]) for r in claimed}
    eurusd.execute(
        "UPDATE tickagg.data_agg_state SET status = 'idle', claim_token = NULL,"
        " lease_expires_at = NULL, running_started_at_utc = NULL"
    )

    res = _ok(runner, "tasks", "enable", "EURUSD", "--timeframe", "5m", "--kind", "rollup")
    assert res["tasks"][0]["enabled"] is True
    t = _task(eurusd, "5m")
    assert (t["enabled"], t["disabled_by_user"]) == (True, False)
    claimed = eurusd.execute(
        "SELECT timeframe FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
        " WHERE task_kind = 'rollup'"
    ).fetchall()
    assert "5m" in {r["timeframe"] for r in claimed}


def test_disable_all_kinds_of_a_symbol_survives_both_syncs(eurusd, role_dsn):
    runner = role_dsn()
    n = eurusd.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE canonical_symbol = 'EURUSD'"
    ).fetchone()["n"]
    assert n == 7 + 2 + 1 + 7  # rollups, two gap scans, export, indicators
    assert _ok(runner, "tasks", "disable", "EURUSD")["tasks_changed"] == n
    _sync(runner)
    eurusd.execute("SELECT tickagg.sync_export_tasks('prod', %s)", (START,))
    eurusd.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    # a mandatory change still applies to the disabled tasks, which stay disabled
    eurusd.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', p_is_mandatory => true)")
    _sync(runner)
    rows = eurusd.execute(
        "SELECT task_kind, enabled, disabled_by_user, is_mandatory FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'EURUSD'"
    ).fetchall()
    assert not any(r["enabled"] for r in rows)
    assert all(r["is_mandatory"] for r in rows if r["task_kind"] == "rollup")

    assert _ok(runner, "tasks", "enable", "EURUSD", "--kind", "export")["tasks_changed"] == 1
    assert _task(eurusd, "1m", "export")["enabled"] is True
    assert _ok(runner, "tasks", "enable", "EURUSD")["tasks_changed"] == n
    assert all(
        r["enabled"]
        for r in eurusd.execute("SELECT enabled FROM tickagg.data_agg_state").fetchall()
    )


def test_enable_revives_an_auto_disabled_optional_task(eurusd, role_dsn):
    eurusd.execute(
        "UPDATE tickagg.data_agg_state SET status = 'disabled', hard_fail_streak = 3"
        " WHERE canonical_symbol = 'EURUSD' AND timeframe = '1h'"
    )
    _ok(role_dsn(), "tasks", "enable", "EURUSD", "--timeframe", "1h")
    t = _task(eurusd, "1h")
    assert (t["status"], t["hard_fail_streak"], t["enabled"]) == ("idle", 0, True)


def test_reset_hard_failed_needs_force(eurusd, role_dsn):
    runner = role_dsn()
    cursor = _task(eurusd, "15m")["last_agg_bar_ts_utc"]
    eurusd.execute(
        "UPDATE tickagg.data_agg_state SET status = 'hard_failed', hard_fail_streak = 3,"
        " transient_fail_streak = 2, last_error = 'boom', next_run_at = now() + interval '1 day'"
        " WHERE canonical_symbol = 'EURUSD' AND timeframe = '15m' AND task_kind = 'rollup'"
    )
    out = run_cli(runner, "tasks", "reset", "EURUSD", "--timeframe", "15m", timeout=60)
    assert out.returncode == 1
    assert "TK004" in out.stderr and "hard_failed" in out.stderr and "--force" in out.stderr
    assert _task(eurusd, "15m")["status"] == "hard_failed"
    # a symbol-wide reset is refused too: nothing is reset
    assert run_cli(runner, "tasks", "reset", "EURUSD", timeout=60).returncode == 1

    res = _ok(
        runner, "tasks", "reset", "EURUSD", "--timeframe", "15m", "--kind", "rollup", "--force"
    )
    assert res["tasks_reset"] == 1
    t = _task(eurusd, "15m")
    assert t["status"] == "idle"
    assert (t["hard_fail_streak"], t["transient_fail_streak"], t["last_error"]) == (0, 0, None)
    assert t["claim_token"] is None and t["lease_expires_at"] is None
    assert t["last_agg_bar_ts_utc"] == cursor
    assert t["next_run_at"] <= eurusd.execute("SELECT now() AS n").fetchone()["n"]


def test_reset_of_a_leased_task_and_unknown_symbol(eurusd, role_dsn):
    runner = role_dsn()
    (t,) = eurusd.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 300)"
    ).fetchall()
    sel = ("EURUSD", "--timeframe", t["timeframe"], "--kind", t["task_kind"])
    out = run_cli(runner, "tasks", "reset", *sel, timeout=60)
    assert out.returncode == 1 and "live lease" in out.stderr
    # once the lease ran out no --force is needed
    eurusd.execute(
        "UPDATE tickagg.data_agg_state SET lease_expires_at = now() - interval '1 minute'"
        " WHERE status = 'running'"
    )
    assert _ok(runner, "tasks", "reset", *sel)["tasks_reset"] == 1
    assert _task(eurusd, t["timeframe"], t["task_kind"])["status"] == "idle"

    out = run_cli(runner, "tasks", "disable", "NOPE", timeout=60)
    assert out.returncode == 1 and "TK006" in out.stderr and "no task for NOPE" in out.stderr
    out = run_cli(runner, "tasks", "reset", "EURUSD", "--kind", "bogus", timeout=60)
    assert out.returncode == 2  # click rejects the kind


def _set_indicators_enabled(conn, value: str) -> None:
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = %s WHERE setting_key = 'indicators_enabled'",
        (value,),
    )


def test_enabling_a_rollup_enables_its_indicators_task_at_once(eurusd, role_dsn):
    """An indicators task is on exactly when its rollup is (README): sync turns it
    off with a disabled rollup, and `tasks enable --kind rollup` turns it on again
    at once, not at the next sync (issue 18 item 5). One the operator disabled
    themselves stays off, and so do all while indicators_enabled is false."""
    runner = role_dsn()
    for tf in ("5m", "1h", "1d"):
        _ok(runner, "tasks", "disable", "EURUSD", "--timeframe", tf, "--kind", "rollup")
    _ok(runner, "tasks", "disable", "EURUSD", "--timeframe", "1h", "--kind", "indicators")
    _sync(runner)
    assert [_task(eurusd, tf, "indicators")["enabled"] for tf in ("5m", "1h", "1d")] == [False] * 3

    res = _ok(runner, "tasks", "enable", "EURUSD", "--timeframe", "5m", "--kind", "rollup")
    assert {(t["timeframe"], t["task_kind"]) for t in res["tasks"]} == {
        ("5m", "rollup"),
        ("5m", "indicators"),
    }
    ind = _task(eurusd, "5m", "indicators")
    assert (ind["enabled"], ind["disabled_by_user"]) == (True, False)
    assert ind["next_run_at"] <= eurusd.execute("SELECT now() AS t").fetchone()["t"]

    _ok(runner, "tasks", "enable", "EURUSD", "--timeframe", "1h", "--kind", "rollup")
    assert _task(eurusd, "1h", "indicators")["enabled"] is False, "the operator's disable holds"

    _set_indicators_enabled(eurusd, "false")
    _ok(runner, "tasks", "enable", "EURUSD", "--timeframe", "1d", "--kind", "rollup")
    assert _task(eurusd, "1d", "indicators")["enabled"] is False

    _set_indicators_enabled(eurusd, "true")
    _sync(runner)  # sync agrees: on beside an enabled rollup unless the operator said no
    got = [_task(eurusd, tf, "indicators")["enabled"] for tf in ("5m", "1h", "1d")]
    assert got == [True, False, True]
