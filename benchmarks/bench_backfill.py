"""Backfill benchmark: the user's whole path from a history file to every timeframe.

Runs the README's commands as processes, with default options, on a generated
file of crypto 1-minute bars ending now (with gaps), and the floors in the same
cluster, then prints the ratios issue 16 sets:

    ingest          `tickagg ingest bars FILE`          vs a bare COPY of the file
                                                           into a table keyed like data_bars
    rollups         `tickagg run --until-idle` until the vs a bare INSERT ... SELECT ...
                    last rollup run of all 7 levels         GROUP BY of the 5m level
    whole path      ingest + run (indicators included)  vs bare COPY + bare GROUP BY

plus the per-kind and per-level breakdown from ops_runlog, and, with
--compare-workers, the same path in a second database with the other number of
workers (the speed-up of --workers 2 over --workers 1) and, with --compare-jobs, the
ingest with one session against the default two. Asserts nothing.

    .venv/bin/python benchmarks/bench_backfill.py [--rows 1000000] [--symbols 10]
        [--workers N] [--compare-workers] [--compare-jobs] [--keep-csv PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import (  # noqa: E402
    BASELINE_ORDERED_SQL,
    BASELINE_SQL,
    BASELINE_TABLE_SQL,
    ROOT,
    bench_database,
    server_info,
    sibling_database,
    timed,
)
from psycopg.rows import dict_row  # noqa: E402

TICKAGG = ROOT / ".venv" / "bin" / "tickagg"
COPY_BLOCK = 1 << 20
LEVELS = ["5m", "15m", "30m", "1h", "4h", "1d", "1w"]

COPY_TABLE_SQL = """
CREATE TABLE public.bench_copy (
    canonical_symbol text NOT NULL,
    timeframe text NOT NULL DEFAULT '1m',
    ts_utc timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    vwap double precision,
    trade_count bigint,
    PRIMARY KEY (canonical_symbol, timeframe, ts_utc)
)
"""
COPY_SQL = (
    "COPY public.bench_copy (canonical_symbol, ts_utc, open, high, low, close, volume, vwap, "
    "trade_count) FROM STDIN (FORMAT csv, HEADER true)"
)

# Per task kind and level: runs, bars, the time spent in runs and when the last
# run ended, counted from the start of `run --until-idle`. The tasks of one batch
# share its start: a batch's time counts once (summing its tasks' rows counted it
# once per task, ~100 ms a 1w batch of 100 symbols read as 10 s).
BREAKDOWN_SQL = """
SELECT
    l.task_kind, l.timeframe, sum(l.runs) AS runs, sum(l.bars) AS bars,
    extract(EPOCH FROM sum(l.busy)) AS busy_s,
    extract(EPOCH FROM max(l.last_end) - %(t0)s) AS done_at_s
FROM (
    SELECT
        r.task_kind, r.timeframe, count(*) AS runs, sum(r.bars_written) AS bars,
        max(r.finished_at) - r.started_at AS busy, max(r.finished_at) AS last_end
    FROM tickagg.ops_runlog AS r
    WHERE r.started_at >= %(t0)s
    GROUP BY r.task_kind, r.timeframe, r.started_at
) AS l
LEFT JOIN tickagg.timeframes AS t ON t.timeframe = l.timeframe
GROUP BY 1, 2
ORDER BY 1, min(t.sort_order)
"""


def write_csv(path: Path, rows: int, symbols: list[str], seed: int) -> tuple[int, dt.datetime]:
    """Random-walk crypto 1m bars per symbol, ending at the last closed minute,
    with ~0.2% single missing minutes and a 30-240 minute hole every ~10 days.
    Returns (rows written, first minute)."""
    rng = random.Random(seed)
    per_symbol = rows // len(symbols)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    span = int(per_symbol * 1.004) + 60
    first = end - dt.timedelta(minutes=span)
    written = 0
    with path.open("w") as fh:
        fh.write("canonical_symbol,ts_utc,open,high,low,close,volume,vwap,trade_count\n")
        for sym in symbols:
            price = 100 + rng.random() * 900
            hole_at, n = rng.randrange(14400), 0
            m = 0
            while n < per_symbol and m < span:
                ts = first + dt.timedelta(minutes=m)
                m += 1
                if m == hole_at:
                    m += rng.randrange(30, 240)
                    hole_at = m + rng.randrange(7200, 21600)
                    continue
                if rng.random() < 0.002:
                    continue
                o = price
                c = max(0.01, price * (1 + rng.gauss(0, 0.0008)))
                h = max(o, c) * (1 + rng.random() * 0.0005)
                lo = min(o, c) * (1 - rng.random() * 0.0005)
                vol = round(rng.random() * 50, 4)
                vwap = (h + lo + c) / 3
                fh.write(
                    f"{sym},{ts:%Y-%m-%dT%H:%M:%SZ},{o:.6f},{h:.6f},{lo:.6f},{c:.6f},"
                    f"{vol},{vwap:.6f},{rng.randrange(1, 500)}\n"
                )
                price = c
                n += 1
            written += n
    return written, first


def bare_copy(conn: psycopg.Connection, path: Path) -> float:
    conn.execute("DROP TABLE IF EXISTS public.bench_copy")
    conn.execute(COPY_TABLE_SQL)
    conn.execute("CHECKPOINT")
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(COPY_SQL) as copy, path.open("rb") as fh:
        while block := fh.read(COPY_BLOCK):
            copy.write(block)
    return time.perf_counter() - t0


def bare_group_by(conn: psycopg.Connection, query: str) -> float:
    conn.execute("DROP TABLE IF EXISTS public.bench_5m")
    conn.execute(BASELINE_TABLE_SQL)
    conn.execute("CHECKPOINT")
    return timed(lambda: conn.execute(query.format(where="")))


def tickagg(dsn: str, *args: str) -> tuple[float, float]:
    """Run the CLI as a process; (wall seconds, its peak RSS in MB)."""
    env = {**os.environ, "TICKAGG_DSN": dsn}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([str(TICKAGG), *args], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"tickagg {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return secs, max(rss, before) / 1024


def prepare(conn: psycopg.Connection, dsn: str, symbols: list[str], first: dt.datetime) -> None:
    for sym in symbols:
        conn.execute("SELECT tickagg.register_symbol(%s, 'crypto_24x7')", (sym,))
    start = (first - dt.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    tickagg(dsn, "sync", "--start", start)


def user_path(dsn: str, csv: Path, symbols, first, workers: int | None) -> dict:
    """The README's commands on a fresh database: ingest, then run until idle."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        prepare(conn, dsn, symbols, first)
        ingest_s, ingest_rss = tickagg(dsn, "ingest", "bars", str(csv))
        t0 = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
        run_args = ["run", "--until-idle"] + ([f"--workers={workers}"] if workers else [])
        run_s, _ = tickagg(dsn, *run_args)
        rows = conn.execute(BREAKDOWN_SQL, {"t0": t0}).fetchall()
        left = conn.execute(
            "SELECT count(*) AS n FROM tickagg.data_agg_state "
            "WHERE enabled AND (status <> 'idle' OR next_run_at <= now())"
        ).fetchone()["n"]
    return {
        "ingest_s": ingest_s,
        "ingest_rss_mb": ingest_rss,
        "run_s": run_s,
        "breakdown": rows,
        "due_after": left,
    }


def rollups_done_at(path: dict) -> float:
    return max(
        (float(r["done_at_s"]) for r in path["breakdown"] if r["task_kind"] == "rollup"),
        default=0.0,
    )


def report(rows: int, n_sym: int, copy_s: float, group_s: float, path: dict, label: str) -> None:
    roll = rollups_done_at(path)
    ind = max(
        (float(r["done_at_s"]) for r in path["breakdown"] if r["task_kind"] == "indicators"),
        default=0.0,
    )
    floor = copy_s + group_s
    whole = path["ingest_s"] + path["run_s"]
    print(f"\n== {label}: {rows:,} 1m rows of {n_sym} symbols")
    print(f"floors: bare COPY {copy_s:.2f} s, bare 5m GROUP BY {group_s:.2f} s")
    steps = [
        ("ingest bars (vs COPY)", path["ingest_s"], copy_s, "1.5"),
        ("run --until-idle: all 7 rollup levels done", roll, group_s, "1.5"),
        ("run --until-idle: indicators done", ind, group_s, ""),
        ("run --until-idle: the process", path["run_s"], group_s, ""),
        ("whole path (vs COPY + GROUP BY)", whole, floor, "3.0"),
    ]
    print(f"{'step':<44} {'seconds':>8} {'ratio':>7} {'goal':>6}")
    for name, secs, base, goal in steps:
        print(f"{name:<44} {secs:8.2f} {secs / base:7.2f} {goal:>6}")
    print(f"ingest peak RSS {path['ingest_rss_mb']:.0f} MB; still due after: {path['due_after']}")
    print(f"\n{'kind':<12} {'level':<6} {'runs':>7} {'bars':>10} {'busy s':>8} {'done at s':>10}")
    for r in path["breakdown"]:
        print(
            f"{r['task_kind']:<12} {r['timeframe']:<6} {r['runs']:>7} {r['bars'] or 0:>10} "
            f"{float(r['busy_s'] or 0):8.2f} {float(r['done_at_s'] or 0):10.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--workers", type=int, default=None, help="run --workers (default: its own)")
    ap.add_argument(
        "--compare-workers",
        action="store_true",
        help="also run the path with --workers 1 and --workers 2 in fresh databases",
    )
    ap.add_argument(
        "--compare-jobs",
        action="store_true",
        help="also ingest the file with --jobs 1 in a fresh database (the speed-up of the"
        " default two sessions over one)",
    )
    ap.add_argument("--keep-csv", type=Path, help="write the generated file here and keep it")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    symbols = [f"BF{i:04d}" for i in range(args.symbols)]

    with tempfile.TemporaryDirectory(prefix="tickagg-bench-backfill-") as tmp:
        csv = args.keep_csv or Path(tmp) / "bars.csv"
        t = time.perf_counter()
        rows, first = write_csv(csv, args.rows, symbols, args.seed)
        print(f"generated {rows:,} rows in {time.perf_counter() - t:.1f} s ({csv})")
        with bench_database("tickagg_bench_backfill") as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                print(server_info(conn))
                # the floors take turns with nothing else running; best of two
                copy_s = min(bare_copy(conn, csv) for _ in range(2))
                conn.execute("DROP TABLE public.bench_copy")
            path = user_path(dsn, csv, symbols, first, args.workers)
            with psycopg.connect(dsn, autocommit=True) as conn:
                # the faster of the two ways to take open and close, best of two each
                group_s = min(
                    bare_group_by(conn, query)
                    for query in (BASELINE_SQL, BASELINE_ORDERED_SQL)
                    for _ in range(2)
                )
            report(rows, len(symbols), copy_s, group_s, path, "default options")
            if args.compare_jobs:
                with sibling_database(dsn, "tickagg_bench_backfill_j") as other:
                    with psycopg.connect(other, autocommit=True, row_factory=dict_row) as conn:
                        prepare(conn, other, symbols, first)
                    one_s, _ = tickagg(other, "ingest", "bars", "--jobs", "1", str(csv))
                print(
                    f"\ningest bars --jobs 1: {one_s:.2f} s = {one_s / copy_s:.2f}x COPY;"
                    f" the default ({path['ingest_s']:.2f} s) is {one_s / path['ingest_s']:.2f}x"
                    " as fast"
                )
            if args.compare_workers:
                timings = {}
                for workers in (1, 2):
                    with sibling_database(dsn, "tickagg_bench_backfill_w") as other:
                        timings[workers] = user_path(other, csv, symbols, first, workers)
                    label = f"--workers {workers}"
                    report(rows, len(symbols), copy_s, group_s, timings[workers], label)
                one, two = timings[1]["run_s"], timings[2]["run_s"]
                print(f"\nrun --until-idle: --workers 2 is {one / two:.2f}x as fast as --workers 1")


if __name__ == "__main__":
    main()
