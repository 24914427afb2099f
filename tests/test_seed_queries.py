"""The psql checks of the Phase 5 deployment guide (seed 004) run unchanged
against a migrated database and give the results the document promises; the
runner role can call functions but not write tables; grants and search_path
pinning hold for every function."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from runner.doctor import RUNNER_DENIED

SEED = Path("/work/shared/seeds/004_1343f5aedfb9f1f3.txt")

# Copied verbatim from the seed document (sections named in the keys).
VERIFY_SCHEMA = [
    """SELECT column_name, data_type
FROM information_schema.columns
WHERE table_name = 'data_agg_state'
  AND column_name IN ('agg_start_utc', 'enabled', 'task_priority')
ORDER BY ordinal_position;""",
    """SELECT proname, prosecdef, proowner::regrole
FROM pg_proc
WHERE proname IN ('agg_bootstrap_cursor', 'catchup_aggregation_range', 'agg_finish', 
                  'agg_get_due_tasks', 'sync_agg_state_from_registry')
ORDER BY proname;""",
    """SELECT indexname FROM pg_indexes
WHERE tablename = 'data_agg_state' AND indexname = 'idx_agg_state_due_priority';""",
]
VERIFY_DATA = [
    "SELECT COUNT(*) as null_start_dates FROM data_agg_state WHERE agg_start_utc IS NULL;",
    "SELECT COUNT(*) as disabled_tasks FROM data_agg_state WHERE enabled = false;",
    "SELECT COUNT(DISTINCT task_priority) FROM data_agg_state;",
    "SELECT COUNT(*) as hard_failed FROM data_agg_state WHERE status = 'hard_failed';",
]
TEST_FUNCTIONS = [
    "SELECT agg_bootstrap_cursor('EURUSD', '5m');",
    "SELECT COUNT(*) FROM agg_get_due_tasks('prod', NOW());",
    "SELECT sync_agg_state_from_registry('prod', '2025-07-01 00:00:00+00');",
    "SELECT catchup_aggregation_range('EURUSD', '5m', '2025-07-01 00:00:00+00'::timestamptz, 1);",
]
MONITORING = [
    """SELECT s.canonical_symbol, s.timeframe,
       MAX(db.ts_utc) as latest_1m_bar,
       s.last_agg_bar_ts_utc as cursor_position,
       MAX(db.ts_utc) - s.last_agg_bar_ts_utc as lag_duration
FROM data_bars db
JOIN data_agg_state s ON s.canonical_symbol = db.canonical_symbol
WHERE db.timeframe = '1m'
GROUP BY s.canonical_symbol, s.timeframe, s.last_agg_bar_ts_utc
ORDER BY lag_duration DESC NULLS LAST;""",
    """SELECT COUNT(*) as total_tasks,
       COUNT(*) FILTER (WHERE hard_fail_streak > 0) as failing_tasks,
       COUNT(*) FILTER (WHERE status = 'hard_failed') as hard_failed,
       COUNT(*) FILTER (WHERE status = 'disabled') as disabled
FROM data_agg_state;""",
    """SELECT ddb.canonical_symbol, ddb.timeframe,
       COUNT(*) as total_bars,
       COUNT(*) FILTER (WHERE quality_score >= 1) as good_bars,
       ROUND(100.0 * COUNT(*) FILTER (WHERE quality_score >= 1) / COUNT(*), 2) as quality_pct
FROM derived_data_bars ddb
WHERE ddb.deleted_at IS NULL
  AND ddb.ts_utc >= NOW() - INTERVAL '24 hours'
GROUP BY ddb.canonical_symbol, ddb.timeframe;""",
    """EXPLAIN (ANALYZE, BUFFERS)
SELECT * FROM agg_get_due_tasks('prod', NOW());""",
]


def test_snippets_are_verbatim_from_the_seed():
    if not SEED.exists():
        pytest.skip("seed document not available")
    text = SEED.read_text()
    for q in VERIFY_SCHEMA + VERIFY_DATA + TEST_FUNCTIONS + MONITORING:
        assert q in text, q


@pytest.fixture
def eurusd(conn):
    conn.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', 'fx')")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2025-07-01 00:00:00+00')")
    # the seed's checks describe the rollup tasks; sync also adds two gap-scan tasks
    conn.execute("DELETE FROM tickagg.data_agg_state WHERE task_kind <> 'rollup'")
    conn.execute("SET search_path = tickagg, public")
    return conn


def states(conn):
    return conn.execute(
        "SELECT canonical_symbol, timeframe, status, claim_token, next_run_at, runs_total"
        " FROM tickagg.data_agg_state WHERE task_kind = 'rollup' ORDER BY 1, 2"
    ).fetchall()


def test_verify_schema(eurusd):
    rows = eurusd.execute(VERIFY_SCHEMA[0]).fetchall()
    assert {r["column_name"]: r["data_type"] for r in rows} == {
        "agg_start_utc": "timestamp with time zone",
        "enabled": "boolean",
        "task_priority": "integer",
    }
    rows = eurusd.execute(VERIFY_SCHEMA[1]).fetchall()
    assert len(rows) == 5 and all(r["prosecdef"] for r in rows), rows
    assert len(eurusd.execute(VERIFY_SCHEMA[2]).fetchall()) == 1


def test_verify_data(eurusd):
    assert [next(iter(eurusd.execute(q).fetchone().values())) for q in VERIFY_DATA] == [0, 0, 1, 0]


def test_test_functions(eurusd):
    before = states(eurusd)
    assert len(before) == 7
    cursor = eurusd.execute(TEST_FUNCTIONS[0]).fetchone()["agg_bootstrap_cursor"]
    assert cursor.isoformat().startswith("2025-07-01T00:00:00")
    assert eurusd.execute(
        "SELECT agg_bootstrap_cursor('EURUSD', '5m') = '2025-07-01 00:00+00' AS ok"
    ).fetchone()["ok"]
    # after sync only the 5m task is due: the levels above wait for their source
    assert eurusd.execute(TEST_FUNCTIONS[1]).fetchone()["count"] == 1
    assert states(eurusd) == before, "listing due tasks from psql claimed them"
    res = eurusd.execute(TEST_FUNCTIONS[2]).fetchone()["sync_agg_state_from_registry"]
    assert res["success"] is True and res["tasks_created"] == 0
    res = eurusd.execute(TEST_FUNCTIONS[3]).fetchone()["catchup_aggregation_range"]
    assert res["success"] is True and res["windows_processed"] == 0, res
    assert states(eurusd) == before


def test_monitoring_queries(eurusd):
    before = states(eurusd)
    assert eurusd.execute(MONITORING[0]).fetchall() == []  # no 1m data yet
    assert eurusd.execute(MONITORING[1]).fetchone() == {
        "total_tasks": 7,
        "failing_tasks": 0,
        "hard_failed": 0,
        "disabled": 0,
    }
    assert eurusd.execute(MONITORING[2]).fetchall() == []
    plan = "\n".join(r["QUERY PLAN"] for r in eurusd.execute(MONITORING[3]).fetchall())
    assert "agg_get_due_tasks" in plan
    assert states(eurusd) == before, "EXPLAIN ANALYZE of agg_get_due_tasks claimed tasks"


def test_sections_run_from_psql(embedded_pg, dsn, eurusd):
    """The same snippets through psql itself (ON_ERROR_STOP), as an operator would."""
    before = states(eurusd)
    p = conninfo_to_dict(dsn)
    script = "SET search_path = tickagg, public;\n" + "\n".join(
        VERIFY_SCHEMA + VERIFY_DATA + TEST_FUNCTIONS + MONITORING
    )
    out = subprocess.run(
        [str(embedded_pg.bin("psql")), "-X", "-v", "ON_ERROR_STOP=1", "-h", p["host"],
         "-p", str(p["port"]), "-U", p["user"], "-d", p["dbname"], "-f", "-"],
        input=script, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "idx_agg_state_due_priority" in out.stdout
    assert states(eurusd) == before


def test_runner_role_cannot_write_tables_but_calls_functions(eurusd, role_dsn):
    with psycopg.connect(role_dsn(), autocommit=True) as rc:
        assert rc.execute("SELECT current_user").fetchone()[0] == "tickagg_runner"
        for stmt in (
            "INSERT INTO tickagg.data_bars"
            " (canonical_symbol, ts_utc, open, high, low, close, source, source_rank)"
            " VALUES ('EURUSD', '2025-07-01', 1, 1, 1, 1, 'x', 0)",
            "UPDATE tickagg.data_bars SET open = 1",
            "DELETE FROM tickagg.data_bars",
            "INSERT INTO tickagg.data_agg_state (canonical_symbol, timeframe, task_kind,"
            " agg_start_utc, last_agg_bar_ts_utc) VALUES ('X', '5m', 'rollup', now(), now())",
            "UPDATE tickagg.data_agg_state SET status = 'idle'",
            "DELETE FROM tickagg.data_agg_state",
            "UPDATE tickagg.derived_data_bars SET open = 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                rc.execute(stmt)
        assert (
            len(rc.execute("SELECT * FROM tickagg.agg_get_due_tasks('prod', now())").fetchall())
            == 1
        )
        rc.execute("SELECT tickagg.register_symbol('GBPUSD', 'forex_24x5')")
        rc.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2025-07-01')")
        res = rc.execute(
            "SELECT tickagg.catchup_aggregation_range('EURUSD', '5m', '2025-07-01 00:00+00', 1)"
        ).fetchone()[0]
        assert res["success"] is True
        claimed = rc.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 30)"
        ).fetchall()
        assert len(claimed) == 1
        rc.execute(
            "SELECT tickagg.agg_finish(%s, %s, %s, %s, 'release')",
            (claimed[0][0], claimed[0][1], claimed[0][2], claimed[0][4]),
        )
    # two symbols: 7 rollup tasks, 2 gap-scan tasks (live, history), 7 indicators tasks each
    assert eurusd.execute("SELECT count(*) FROM tickagg.data_agg_state").fetchone()["count"] == 32


def test_security_definer_pins_search_path_and_public_cannot_execute(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text AS fn, p.prosecdef, p.proconfig,"
        " EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a"
        "         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_exec,"
        " has_function_privilege('tickagg_runner', p.oid, 'EXECUTE') AS runner_exec,"
        " p.proname"
        " FROM pg_proc AS p WHERE p.pronamespace = 'tickagg'::regnamespace"
    ).fetchall()
    assert len(rows) > 10
    definers = [r for r in rows if r["prosecdef"]]
    assert len(definers) >= 8
    for r in definers:
        assert "search_path=pg_catalog, tickagg, pg_temp" in (r["proconfig"] or []), r
    assert [r["fn"] for r in rows if r["public_exec"]] == []
    # the runner role executes every function but the maintenance ones revoked on purpose
    assert sorted(r["proname"] for r in rows if not r["runner_exec"]) == sorted(RUNNER_DENIED)
