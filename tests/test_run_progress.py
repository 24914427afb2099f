"""`run --until-idle` progress: the query's answer on a known task table, and the
display shown on a terminal only (not through a pipe, not with --log-format json)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import random
import re
import subprocess

import helpers as h
from oracle import random_bars
from psycopg import sql

from runner import queries

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, tzinfo=UTC)
HEADER = "tickagg run --until-idle"


def _set(conn, symbol, timeframe, kind, **values) -> None:
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
    )
    conn.execute(
        sql.SQL(
            "UPDATE tickagg.data_agg_state SET {}"
            " WHERE canonical_symbol = %(s)s AND timeframe = %(tf)s AND task_kind = %(k)s"
        ).format(sets),
        {**values, "s": symbol, "tf": timeframe, "k": kind},
    )


def test_progress_query_counts_due_and_running_and_finds_the_slowest_cursor(conn):
    for sym in ("PA", "PB"):
        h.register(conn, sym, "crypto_24x7")
    h.sync(conn, T0)
    later = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = %s", (later,))
    # one running task, claimed the way the runner claims it
    _set(conn, "PB", "1d", "rollup", next_run_at=T0, last_agg_bar_ts_utc=T0 + dt.timedelta(days=9))
    claimed = queries.get_due_tasks(conn, "prod", 10, 60)
    assert [(t["canonical_symbol"], t["timeframe"]) for t in claimed] == [("PB", "1d")]
    # due: two rollups (the slowest cursor is PA 1h's), one indicators task, one gap
    # scan (no time cursor); a disabled due task is not counted
    _set(conn, "PA", "5m", "rollup", next_run_at=T0, last_agg_bar_ts_utc=T0 + dt.timedelta(days=3))
    _set(conn, "PA", "1h", "rollup", next_run_at=T0, last_agg_bar_ts_utc=T0 + dt.timedelta(days=2))
    _set(conn, "PB", "15m", "indicators", next_run_at=T0, last_agg_bar_ts_utc=T0 + dt.timedelta(7))
    _set(conn, "PA", "1m", "gap_scan", next_run_at=T0)
    _set(conn, "PB", "5m", "rollup", next_run_at=T0, last_agg_bar_ts_utc=T0, enabled=False)
    rows = {r["task_kind"]: r for r in queries.run_progress(conn, "prod")}
    got = {
        k: (r["due"], r["running"], r["slowest_timeframe"], r["slowest_cursor"])
        for k, r in rows.items()
    }
    assert got == {
        "rollup": (2, 1, "1h", T0 + dt.timedelta(days=2)),
        "indicators": (1, 0, "15m", T0 + dt.timedelta(days=7)),
        "gap_scan": (1, 0, None, None),
        "gap_scan_history": (0, 0, None, None),
    }


def _load(conn) -> None:
    h.register(conn, "PRG", "crypto_24x7")
    h.sync(conn, T0)
    h.insert_bars(
        conn,
        "PRG",
        random_bars("crypto_24x7", T0.date(), T0.date() + dt.timedelta(2), random.Random(3)),
    )


def _run_on_terminal(dsn: str, *global_args: str) -> tuple[int, str]:
    """`run --until-idle` with stderr on a pseudo-terminal; returns (exit, stderr)."""
    master, slave = pty.openpty()
    env = {**h.cli_env(), "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        h.tickagg_cmd(dsn, *global_args, "run", "--until-idle"),
        cwd=h.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=300), out.decode(errors="replace")


def test_progress_on_a_terminal(dsn, conn):
    _load(conn)
    code, err = _run_on_terminal(dsn, "--log-level", "WARNING")
    assert code == 0, err[-3000:]
    assert HEADER in err and "slowest cursor" in err and "bars written" in err, err[-3000:]


def test_no_progress_through_a_pipe(dsn, conn):
    _load(conn)
    p = h.run_cli(dsn, "run", "--until-idle")
    assert p.returncode == 0, p.stderr[-3000:]
    assert HEADER not in p.stderr and "slowest cursor" not in p.stderr


def test_no_progress_with_json_logs_on_a_terminal(dsn, conn):
    _load(conn)
    code, err = _run_on_terminal(dsn, "--log-format", "json")
    assert code == 0, err[-3000:]
    assert HEADER not in err
    lines = [line for line in re.split(r"\r?\n", err) if line.strip()]
    assert lines and all(json.loads(line) for line in lines)
