"""The whole user flow under odd server-side session defaults (issue 23, item 6).

A database set to a non-ISO DateStyle, a non-default IntervalStyle, a far time
zone, few float digits, an empty search_path and serializable transactions broke
every command (psycopg could not parse the results, after the claim had
committed). Every tickagg session pins what it relies on, so the same commands
must give the same bars as the oracle and no traceback."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import subprocess
import sys
import time

import helpers as h
from oracle import diff, expected_bars, random_bars
from psycopg import sql

from runner import db

UTC = dt.UTC

ODD_DEFAULTS = {
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "sql_standard",
    "TimeZone": "Asia/Kathmandu",
    "extra_float_digits": "-3",
    "search_path": "public",
    "default_transaction_isolation": "serializable",
}


def test_every_command_works_under_odd_session_defaults(conn, dsn, tmp_path):
    dbname = conn.execute("SELECT current_database() AS d").fetchone()["d"]
    for name, value in ODD_DEFAULTS.items():
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)
            )
        )
    with h.connect(dsn) as plain:  # a session that takes the odd defaults, as any client would
        assert plain.execute("SHOW DateStyle").fetchone()["DateStyle"] == "SQL, DMY"

    rng = random.Random(23)
    data = {
        "FXODD": (
            "forex_24x5",
            random_bars("forex_24x5", dt.date(2025, 3, 5), dt.date(2025, 3, 12), rng),
        ),
        "CRODD": (
            "crypto_24x7",
            random_bars("crypto_24x7", dt.date(2025, 3, 5), dt.date(2025, 3, 8), rng),
        ),
    }
    path = tmp_path / "bars.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "canonical_symbol",
                "ts_utc",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "vwap",
                "trade_count",
            ]
        )
        for sym, (_, bars) in data.items():
            for ts, b in bars.items():
                vwap = "" if b.vwap is None else repr(b.vwap)
                count = "" if b.trade_count is None else b.trade_count
                prices = [repr(x) for x in (b.open, b.high, b.low, b.close, b.volume)]
                w.writerow([sym, ts.isoformat(), *prices, vwap, count])

    start = dt.datetime(2025, 3, 5, tzinfo=UTC)
    commands = [
        ("symbols", "add", "FXODD", "--calendar", "forex_24x5"),
        ("symbols", "add", "CRODD", "--calendar", "crypto_24x7"),
        ("sync", "--start", start.isoformat()),
        ("ingest", "bars", str(path)),
        ("run", "--until-idle"),
        ("status",),
        ("status", "--json"),
        ("gaps", "--symbol", "FXODD"),
        ("tasks", "reset", "CRODD", "--kind", "gap_scan"),
        ("symbols", "list"),
        ("calendars",),
        (
            "rebuild",
            "--symbol",
            "FXODD",
            "--timeframe",
            "all",
            "--from",
            "2025-03-06T00:00:00Z",
            "--to",
            "2025-03-07T00:00:00Z",
        ),
        ("doctor",),
    ]
    for args in commands:
        done = h.run_cli(dsn, *args)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{args}:\n{done.stderr}"
    status = json.loads(h.run_cli(dsn, "status", "--json").stdout)
    assert status, "status --json printed nothing"

    expected = {}
    for sym, (cal, bars) in data.items():
        expected.update(expected_bars(sym, cal, bars, start))
    with db.connect(dsn) as session:
        assert session.execute("SHOW DateStyle").fetchone()["DateStyle"] == "ISO, MDY"
        actual = h.derived(session, data)
    problems = diff(expected, actual)
    assert not problems, "\n".join(problems)


def test_a_killed_clients_statement_does_not_run_on(conn, dsn):
    """A CLI killed mid-query (SIGKILL, a closed terminal) left its statement running
    on the server for minutes. Every tickagg session asks the server to check that
    its client is still there while a statement runs."""
    probe = "killed-client-probe"
    code = (
        "import sys; from runner import db; "
        f"db.connect(sys.argv[1]).execute('SELECT pg_sleep(120) /* {probe} */')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, dsn], env=h.cli_env(), cwd=h.ROOT)
    active = (
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()"
    )
    try:
        deadline = time.monotonic() + 30
        while conn.execute(active, (f"%{probe}%",)).fetchone()["n"] == 0:
            assert time.monotonic() < deadline, "the probe never started"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while conn.execute(active, (f"%{probe}%",)).fetchone()["n"] > 0:
        assert time.monotonic() < deadline, "the killed client's statement still runs after 20 s"
        time.sleep(0.2)
