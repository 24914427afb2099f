"""A whole bar-fed market live: time to idle after an ingest, and runs per idle minute.

The case of issue 24: 2,000 crypto symbols fed by 1m bars (32,000 tasks after
`sync`), 30 minutes of 1m bars ingested with `tickagg ingest bars` (60,000 rows),
then `tickagg run --until-idle` as a process (default options): the seconds until
it returns (or the cap, when it does not), runs per task kind from ops_runlog and
the tasks of each kind that never ran. Then a `tickagg run` daemon (default
options) is started on the caught-up database and left alone: after a settling
period, the runs it makes per minute with no new data, per kind, against the
task count (goal < 1 %). Asserts nothing.

    .venv/bin/python benchmarks/bench_market_idle.py [--symbols 2000] [--minutes 30]
        [--idle-cap 1200] [--settle 60] [--idle-window 120]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, server_info  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

TICKAGG = ROOT / ".venv" / "bin" / "tickagg"

RUNS_BY_KIND = """
SELECT task_kind, count(*) AS runs, count(*) FILTER (WHERE bars_written = 0) AS runs_writing_nothing
FROM tickagg.ops_runlog
WHERE started_at >= %(since)s AND started_at < %(until)s
GROUP BY task_kind ORDER BY task_kind
"""
NEVER_RAN = """
SELECT task_kind, count(*) AS tasks, count(*) FILTER (WHERE runs_total = 0) AS never_ran
FROM tickagg.data_agg_state WHERE enabled
GROUP BY task_kind ORDER BY task_kind
"""


def write_csv(path: Path, symbols: list[str], minutes: int, last_minute: dt.datetime) -> int:
    rows = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume"])
        for i, sym in enumerate(symbols):
            price = 100.0 + i
            for m in range(minutes):
                ts = last_minute - dt.timedelta(minutes=minutes - 1 - m)
                o = price
                price = round(price * (1 + ((m * 7 + i) % 11 - 5) / 10000), 6)
                w.writerow(
                    [sym, ts.strftime("%Y-%m-%d %H:%M:%S"), o, max(o, price) + 0.01,
                     min(o, price) - 0.01, price, 10 + (m + i) % 50]
                )  # fmt: skip
                rows += 1
    return rows


def tickagg(dsn: str, log: Path, *args: str) -> subprocess.Popen:
    """A tickagg command as a process; its log goes to a file (a pipe nobody reads fills up)."""
    env = {**os.environ, "TICKAGG_DSN": dsn}
    with log.open("ab") as out:
        return subprocess.Popen([str(TICKAGG), *args], env=env, stdout=out, stderr=out)


def print_runs(conn, since, until, minutes: float | None, tasks: int) -> None:
    rows = conn.execute(RUNS_BY_KIND, {"since": since, "until": until}).fetchall()
    total = sum(r["runs"] for r in rows)
    for r in rows:
        per_min = f", {r['runs'] / minutes:,.1f}/min" if minutes else ""
        nothing = r["runs_writing_nothing"]
        print(f"  {r['task_kind']:<18} {r['runs']:>8,} runs ({nothing:,} wrote nothing){per_min}")
    if minutes:
        per_min = total / minutes
        print(
            f"  total              {total:>8,} runs, {per_min:,.1f} per minute ="
            f" {100 * per_min / tasks:.2f}% of {tasks:,} tasks (goal < 1%)"
        )
    else:
        print(f"  total              {total:>8,} runs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=30, help="minutes of 1m bars per symbol")
    ap.add_argument("--idle-cap", type=float, default=1200, help="give up on --until-idle after s")
    ap.add_argument("--settle", type=float, default=60, help="daemon seconds before measuring")
    ap.add_argument("--idle-window", type=float, default=120, help="seconds of idle measurement")
    args = ap.parse_args()

    with bench_database("bench_market_idle") as dsn, tempfile.TemporaryDirectory() as tmp:
        conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        print(server_info(conn))
        print("machine shared with other sessions: absolute seconds are noisy")
        symbols = [f"C{i:05d}USD" for i in range(args.symbols)]
        conn.execute(
            "SELECT count(tickagg.register_symbol(s, 'crypto_24x7')) FROM unnest(%s::text[]) AS s",
            (symbols,),
        )
        now = conn.execute("SELECT now() AS n").fetchone()["n"]
        last_minute = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
        start = last_minute.replace(hour=0, minute=0) - dt.timedelta(days=1)
        conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (start,))
        tasks = conn.execute("SELECT count(*) AS n FROM tickagg.data_agg_state").fetchone()["n"]
        print(f"{args.symbols:,} crypto_24x7 bar-fed symbols, {tasks:,} tasks, agg start {start}")

        path = Path(tmp) / "bars.csv"
        rows = write_csv(path, symbols, args.minutes, last_minute)
        t0 = time.perf_counter()
        log = Path(tmp) / "tickagg.log"
        p = tickagg(dsn, log, "ingest", "bars", str(path))
        p.wait()
        print(
            f"ingest bars: {rows:,} rows in {time.perf_counter() - t0:.1f}s (exit {p.returncode})"
        )
        if p.returncode not in (0, 3):
            print(log.read_text()[-2000:])
            return

        since = conn.execute("SELECT clock_timestamp() AS n").fetchone()["n"]
        t0 = time.perf_counter()
        p = tickagg(dsn, log, "run", "--until-idle")
        try:
            p.wait(timeout=args.idle_cap)
            took = time.perf_counter() - t0
            print(f"run --until-idle: returned after {took:.1f}s (exit {p.returncode})")
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            p.wait()
            took = time.perf_counter() - t0
            print(f"run --until-idle: NOT idle after {took:.0f}s (stopped)")
        until = conn.execute("SELECT clock_timestamp() AS n").fetchone()["n"]
        print_runs(conn, since, until, None, tasks)
        for r in conn.execute("SELECT * FROM tickagg.task_waits").fetchall():
            print(
                f"  {r['task_kind']:<18} {r['due']:>8,} tasks still due,"
                f" the oldest for {r['oldest_wait_seconds']:.0f}s"
            )
        for r in conn.execute(NEVER_RAN).fetchall():
            print(f"  {r['task_kind']:<18} {r['never_ran']:>8,} of {r['tasks']:,} tasks never ran")

        daemon = tickagg(dsn, log, "run")
        try:
            time.sleep(args.settle)
            since = conn.execute("SELECT clock_timestamp() AS n").fetchone()["n"]
            time.sleep(args.idle_window)
            until = conn.execute("SELECT clock_timestamp() AS n").fetchone()["n"]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=600)
        print(
            f"daemon with no new data, {args.idle_window / 60:.1f} minutes"
            f" after {args.settle:.0f}s settling:"
        )
        print_runs(conn, since, until, args.idle_window / 60, tasks)


if __name__ == "__main__":
    main()
