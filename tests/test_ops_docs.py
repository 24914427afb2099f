"""docs/verify.sql runs whole through the real psql binary (ON_ERROR_STOP) on a
database with demo-like data, and its integrity checks come back clean; the
systemd unit in docs/ has the keys the runbook relies on."""

from __future__ import annotations

import configparser
import datetime as dt
import random
import subprocess
import uuid
from pathlib import Path

from helpers import drive
from psycopg.conninfo import conninfo_to_dict

from runner import db, queries
from runner.ingest import ingest_rows
from runner.synthetic import SymbolSpec, generate

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def _demo_like(dsn: str, symbols: int = 2, days: int = 3) -> list[str]:
    """Two prod symbols with a few days of 1-minute bars (holes included), driven
    to idle like the runner, one failed run in the run log."""
    end = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    start = (end - dt.timedelta(days=days)).replace(minute=0)
    names = []
    with db.connect(dsn) as conn:
        for i in range(symbols):
            sym = f"V{uuid.uuid4().hex[:6].upper()}"
            spec = SymbolSpec(sym, "crypto_24x7", 100.0 + i, 2, 0.001, 10, "crypto")
            rows = (
                (n + 2, b[0], b[1].isoformat(), *b[2:], None, None)
                for n, b in enumerate(generate(spec, start, end, random.Random(i)))
            )
            with conn.transaction():
                queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto")
            assert ingest_rows(conn, rows, f"{sym}.csv", "polygon_historical")["rows_rejected"] == 0
            names.append(sym)
        with conn.transaction():
            queries.sync_agg_state_from_registry(conn, "prod", start)
            queries.ops_log_run(
                conn,
                uuid.uuid4(),
                {"canonical_symbol": names[0], "timeframe": "5m", "task_kind": "rollup"},
                end,
                "transient",
                error="statement timeout",
            )
    drive(dsn)
    return names


def _psql(embedded_pg, dsn: str, *args: str) -> subprocess.CompletedProcess:
    p = conninfo_to_dict(dsn)
    return subprocess.run(
        [str(embedded_pg.bin("psql")), "-X", "-v", "ON_ERROR_STOP=1", "-h", p["host"],
         "-p", str(p["port"]), "-U", p["user"], "-d", p["dbname"], *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_verify_sql_runs_whole_through_psql(embedded_pg, dsn, conn):
    path = ROOT / "docs" / "verify.sql"
    assert path.read_text().splitlines()[0] == "SET search_path = tickagg, public;"
    syms = _demo_like(dsn)
    before = conn.execute(
        "SELECT canonical_symbol, timeframe, task_kind, status, next_run_at, runs_total"
        " FROM tickagg.data_agg_state ORDER BY 1, 2, 3"
    ).fetchall()
    out = _psql(embedded_pg, dsn, "-f", str(path))
    assert out.returncode == 0, out.stderr
    assert "ERROR" not in out.stderr
    text = out.stdout
    assert "idx_agg_state_due_priority" in text
    assert "Function Scan on agg_get_due_tasks" in text  # EXPLAIN of the due-task query
    assert "0005_task_control" in text
    assert all(s in text for s in syms)
    assert "statement timeout" in text  # the failed run shows up in the failure section
    # read-only: listing due tasks and EXPLAIN ANALYZE claimed nothing
    after = conn.execute(
        "SELECT canonical_symbol, timeframe, task_kind, status, next_run_at, runs_total"
        " FROM tickagg.data_agg_state ORDER BY 1, 2, 3"
    ).fetchall()
    assert after == before

    # the "Expected: 0" checks really are 0 on a healthy database: run them one by one
    conn.execute("SET search_path = tickagg, public")
    for name in ("inconsistent_derived_bars", "bars_beyond_cursor", "null_start_dates"):
        stmt = _statement_selecting(path.read_text(), name)
        assert conn.execute(stmt).fetchone()[name] == 0, stmt


def _statement_selecting(text: str, column: str) -> str:
    for stmt in text.split(";"):
        if f"AS {column}" in stmt:
            return "\n".join(
                line for line in stmt.splitlines() if not line.lstrip().startswith("--")
            )
    raise AssertionError(f"no statement selects {column}")


def test_systemd_unit_has_the_runbook_keys():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(ROOT / "docs" / "tickagg.service")
    svc = unit["Service"]
    assert svc["Type"] == "simple"
    exec_start = svc["ExecStart"].split()
    assert exec_start[0].endswith("/.venv/bin/tickagg")
    assert exec_start[1:] == ["run", "--metrics-port", "9464"]
    assert svc["EnvironmentFile"] == "/etc/tickagg/env"
    assert svc["Restart"] == "on-failure"
    assert svc["KillSignal"] == "SIGTERM"
    assert int(svc["TimeoutStopSec"]) == 330 > 300  # above the 300 s statement timeout
    assert svc["User"] == "tickagg"
    assert "network" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_demo_fallback_directory_follows_the_requested_one():
    """Two demos started from different places (two clones, CI next to a developer's
    demo) must not share one fallback cluster directory; the same place reuses its own."""
    from runner.demo import fallback_data_dir

    a = fallback_data_dir("/root/clone-a/.demo/pg")
    b = fallback_data_dir("/root/clone-b/.demo/pg")
    assert a != b
    assert a == fallback_data_dir("/root/clone-a/.demo/../.demo/pg")
