"""`tickagg doctor` on a real database: all OK when clean; a grant to PUBLIC, an
unpinned SECURITY DEFINER function, drift, a stuck lease and table bloat are each
reported with their fix; exit 1 only on FAIL."""

from __future__ import annotations

import json

import psycopg
import pytest
from helpers import run_cli


def _doctor(dsn: str) -> tuple[int, str, dict]:
    out = run_cli(dsn, "doctor", timeout=60)
    js = run_cli(dsn, "doctor", "--json", timeout=60)
    assert js.returncode == out.returncode, js.stderr
    return out.returncode, out.stdout + out.stderr, {c["name"]: c for c in json.loads(js.stdout)}


@pytest.fixture
def eurusd(conn):
    conn.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', 'fx')")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2025-07-01')")
    return conn


def test_clean_database_is_all_ok(dsn, eurusd):
    rc, out, checks = _doctor(dsn)
    assert rc == 0, out
    assert set(checks) == {
        "search_path",
        "public_execute",
        "runner_execute",
        "migrations",
        "drift",
        "stuck_leases",
        "bloat",
    }
    assert all(c["level"] == "OK" for c in checks.values()), out
    assert "fix:" not in out and "7 checks: 0 FAIL, 0 WARN" in out


def test_public_execute_grant_fails_with_its_fix(dsn, conn):
    conn.execute("GRANT EXECUTE ON FUNCTION tickagg.setting(text) TO PUBLIC")
    rc, out, checks = _doctor(dsn)
    assert rc == 1
    assert checks["public_execute"]["level"] == "FAIL"
    assert "tickagg.setting(text)" in checks["public_execute"]["detail"]
    assert "FAIL  public_execute" in out
    assert "fix: REVOKE EXECUTE ON FUNCTION tickagg.setting(text) FROM PUBLIC" in out
    # the fix works
    conn.execute("REVOKE EXECUTE ON FUNCTION tickagg.setting(text) FROM PUBLIC")
    assert _doctor(dsn)[0] == 0


def test_unpinned_definer_missing_grant_and_drift_fail(dsn, conn):
    conn.execute(
        "ALTER FUNCTION tickagg.agg_task_reset(text, text, text, boolean) RESET search_path"
    )
    conn.execute(
        "REVOKE EXECUTE ON FUNCTION tickagg.agg_task_set_enabled(text, text, text, boolean)"
        " FROM tickagg_runner"
    )
    rc, out, checks = _doctor(dsn)
    assert rc == 1
    assert checks["search_path"]["level"] == "FAIL"
    assert "tickagg.agg_task_reset(text,text,text,boolean)" in checks["search_path"]["detail"]
    assert "SET search_path = pg_catalog, tickagg, pg_temp" in checks["search_path"]["fix"]
    assert checks["runner_execute"]["level"] == "FAIL"
    assert "agg_task_set_enabled" in checks["runner_execute"]["detail"]
    # the fix grants that function, not ALL FUNCTIONS (which would re-grant the
    # maintenance functions revoked from the runner on purpose)
    assert checks["runner_execute"]["fix"].startswith(
        "GRANT EXECUTE ON FUNCTION tickagg.agg_task_set_enabled(text,text,text,boolean)"
    )
    # ALTER FUNCTION changed the live definition: drift, fixed by migrate
    assert checks["drift"]["level"] == "FAIL"
    assert "functions/agg_task_reset.sql definition_changed" in checks["drift"]["detail"]
    assert checks["drift"]["fix"].startswith("tickagg migrate")
    assert run_cli(dsn, "migrate", timeout=120).returncode == 0
    rc, out, _ = _doctor(dsn)
    assert rc == 0, out


def test_stuck_lease_is_reported_and_reset_clears_it(dsn, eurusd):
    (t,) = eurusd.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 60)"
    ).fetchall()
    rc, _, checks = _doctor(dsn)  # a live lease is not stuck
    assert checks["stuck_leases"]["level"] == "OK"
    eurusd.execute(
        "UPDATE tickagg.data_agg_state SET lease_expires_at = now() - interval '6 minutes'"
        " WHERE status = 'running'"
    )
    rc, out, checks = _doctor(dsn)
    assert rc == 0, out  # a warning, not a failure
    stuck = checks["stuck_leases"]
    assert stuck["level"] == "WARN"
    assert f"EURUSD {t['timeframe']} {t['task_kind']}" in stuck["detail"]
    assert "WARN  stuck_leases" in out
    fix = f"tickagg tasks reset EURUSD --timeframe {t['timeframe']} --kind {t['task_kind']}"
    assert fix in stuck["fix"]
    res = run_cli(dsn, *fix.split()[1:], timeout=60)
    assert res.returncode == 0, res.stderr
    assert _doctor(dsn)[2]["stuck_leases"]["level"] == "OK"


def test_bloat_of_data_agg_state_warns_with_vacuum(dsn, eurusd):
    # an open snapshot keeps the old row versions from being pruned; no autovacuum either
    eurusd.execute("ALTER TABLE tickagg.data_agg_state SET (autovacuum_enabled = false)")
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM tickagg.settings")  # takes the snapshot
        for _ in range(20):
            eurusd.execute("UPDATE tickagg.data_agg_state SET updated_at = now()")
        eurusd.execute("SELECT pg_stat_force_next_flush()")
        eurusd.execute("SELECT 1")  # the flush happens when the session goes idle
        rc, out, checks = _doctor(dsn)
        holder.execute("ROLLBACK")
    assert rc == 0, out
    assert checks["bloat"]["level"] == "WARN", out
    assert "VACUUM tickagg.data_agg_state" in checks["bloat"]["fix"]
    eurusd.execute("VACUUM tickagg.data_agg_state")
    eurusd.execute("SELECT pg_stat_force_next_flush()")
    eurusd.execute("SELECT 1")
    assert _doctor(dsn)[2]["bloat"]["level"] == "OK"
