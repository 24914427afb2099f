"""Ticks benchmark (issue 5): live latency, ingest, 1-minute aggregation.

1. Latency: `tickagg run` as a subprocess; runner.tick_sim replays
   --minutes of ticks (default 210) at --speed x real time through
   ingest_ticks; from the commit of the tick that closes a minute to the commit
   of the run that wrote its 1m bar, and its 5m bar when it ends a 5m bucket
   (ops_runlog.finished_at). p50/p99. Goal: p99 under 1 s.
2. Ingest: ticks/s through `tickagg ingest ticks` (runner.ingest_ticks, the
   CLI's code path: chunked COPY into a typed temp stage, then
   ingest_staged_ticks) against a bare COPY of the same CSV bytes into
   tickagg.ticks. Goal: within 1.5x.
3. Aggregation: ticks/s of ticks_aggregate_minutes over N ticks (default 2M;
   --agg-ticks 10000000 for the issue's 10M figure), against a bare GROUP BY
   minute of the same ticks (min/max/sum/count, no open/close) for scale.

Prints figures and ratios; asserts nothing.

    .venv/bin/python benchmarks/bench_ticks.py [--ingest-rows N] [--agg-ticks N]
        [--minutes N] [--speed X] [--skip ingest,agg,latency]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, median, server_info  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from runner import db, tick_sim  # noqa: E402
from runner.ingest_ticks import ingest_ticks_file  # noqa: E402

UTC = dt.UTC
GOAL_INGEST_RATIO = 1.5
GOAL_P99_S = 1.0


def register(conn, symbols: list[tuple[str, str]], start: dt.datetime) -> None:
    for sym, kind in symbols:
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks',"
            " p_price_kind => %s)",
            (sym, kind),
        )
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (start,))


def write_csv(path: str, rows: int, symbols: list[tuple[str, str]], start: dt.datetime) -> None:
    rng = random.Random(5)
    span_us = int((dt.datetime.now(UTC) - start).total_seconds() * 1e6) - 60_000_000
    step = span_us / rows
    with open(path, "w") as fh:
        fh.write("canonical_symbol,ts_utc,bid,ask,last,size\n")
        for i in range(rows):
            sym, kind = symbols[i % len(symbols)]
            ts = start + dt.timedelta(microseconds=int(i * step))
            p = 100 + rng.random()
            if kind == "mid":
                fh.write(f"{sym},{ts.isoformat()},{p:.5f},{p + 0.001:.5f},,\n")
            else:
                fh.write(f"{sym},{ts.isoformat()},,,{p:.4f},{rng.randint(1, 50)}\n")


def bench_ingest(dsn: str, rows: int) -> None:
    symbols = [(f"IN{i:02d}", "mid" if i % 2 else "last") for i in range(20)]
    start = (dt.datetime.now(UTC) - dt.timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register(conn, symbols, start)
        conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (start,))
    with tempfile.TemporaryDirectory(prefix="tickagg-bench-ticks-") as tmp:
        path = os.path.join(tmp, "ticks.csv")
        write_csv(path, rows, symbols, start)
        size_mb = os.path.getsize(path) / 1e6
        pool = db.make_pool(dsn, max_size=2)

        def reset():
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("TRUNCATE tickagg.ticks, tickagg.tick_rejects")
                c.execute("DELETE FROM tickagg.agg_invalidations")
                c.execute("VACUUM ANALYZE tickagg.ticks")

        def bare_copy() -> float:
            reset()
            t0 = time.perf_counter()
            with psycopg.connect(dsn) as c, c.cursor() as cur, open(path, "rb") as fh:
                with cur.copy(
                    "COPY tickagg.ticks (canonical_symbol, ts_utc, bid, ask, last_price, size)"
                    " FROM STDIN (FORMAT csv, HEADER)"
                ) as cp:
                    while block := fh.read(1 << 20):
                        cp.write(block)
            return time.perf_counter() - t0

        def cli_path() -> float:
            reset()
            t0 = time.perf_counter()
            res = ingest_ticks_file(pool, path)
            elapsed = time.perf_counter() - t0
            assert res["rows_landed"] == rows, res
            return elapsed

        bare, ours = [], []
        for _ in range(3):
            bare.append(bare_copy())
            ours.append(cli_path())
        pool.close()
    b, o = median(bare), median(ours)
    print(f"\n== ingest: {rows:,} ticks, {size_mb:.0f} MB CSV, 20 symbols (median of 3) ==")
    print(f"  bare COPY into tickagg.ticks : {b:7.2f} s  {rows / b:>10,.0f} ticks/s")
    print(f"  tickagg ingest ticks path    : {o:7.2f} s  {rows / o:>10,.0f} ticks/s")
    print(f"  ratio ingest / bare COPY     : {o / b:7.2f}x  (goal <= {GOAL_INGEST_RATIO}x)")


def bench_aggregate(dsn: str, ticks: int) -> None:
    nsym = 10
    per = ticks // nsym
    start = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    span_s = 2 * 86400
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        symbols = [(f"AG{i:02d}", "mid" if i % 2 else "last") for i in range(nsym)]
        register(conn, symbols, start)
        conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (start,))
        t0 = time.perf_counter()
        conn.execute(
            """
            INSERT INTO tickagg.ticks (canonical_symbol, ts_utc, bid, ask, last_price, size)
            SELECT s.sym,
                   %(start)s::timestamptz + (g.i::float8 * %(span)s / %(per)s) * interval '1 s',
                   CASE WHEN s.mid THEN 100 + (g.i %% 97) / 100.0 END,
                   CASE WHEN s.mid THEN 100.01 + (g.i %% 97) / 100.0 END,
                   CASE WHEN NOT s.mid THEN 100 + (g.i %% 89) / 100.0 END,
                   CASE WHEN NOT s.mid THEN (g.i %% 7) + 1 END
            FROM (SELECT 'AG' || lpad(k::text, 2, '0') AS sym, k %% 2 = 1 AS mid
                  FROM generate_series(0, %(nsym)s - 1) AS k) AS s
            CROSS JOIN generate_series(0, %(per)s - 1) AS g (i)
            """,
            {"start": start, "span": span_s, "per": per, "nsym": nsym},
        )
        load_s = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE tickagg.ticks")
        conn.execute("DELETE FROM tickagg.agg_invalidations")
        t0 = time.perf_counter()
        conn.execute(
            "CREATE TEMP TABLE bare AS SELECT canonical_symbol, date_trunc('minute', ts_utc) AS m,"
            " min(coalesce(last_price, (bid + ask) / 2)) AS lo, max(coalesce(last_price,"
            " (bid + ask) / 2)) AS hi, count(*) AS n, sum(size) AS v"
            " FROM tickagg.ticks WHERE canonical_symbol LIKE 'AG%%' GROUP BY 1, 2"
        )
        bare_s = time.perf_counter() - t0
        minutes = 0
        t0 = time.perf_counter()
        for sym, _ in symbols:
            with conn.transaction():
                r = conn.execute(
                    "SELECT tickagg.ticks_aggregate_minutes(%s, %s, 100000) AS r", (sym, start)
                ).fetchone()["r"]
            minutes += int(r["bars_written"])
        agg_s = time.perf_counter() - t0
    print(f"\n== 1m aggregation: {per * nsym:,} ticks, {nsym} symbols, {minutes:,} bars ==")
    print(f"  load (INSERT ... generate_series) : {load_s:7.2f} s")
    print(f"  bare GROUP BY minute (no open/close): {bare_s:7.2f} s"
          f"  {per * nsym / bare_s:>12,.0f} ticks/s")  # fmt: skip
    print(f"  ticks_aggregate_minutes           : {agg_s:7.2f} s"
          f"  {per * nsym / agg_s:>12,.0f} ticks/s  ({agg_s / bare_s:.2f}x bare)")  # fmt: skip


def bench_latency(dsn: str, minutes: int, speed: float) -> None:
    sims = [
        tick_sim.SimSymbol("LBTC", "last", 60000.0, 90),
        tick_sim.SimSymbol("LETH", "last", 3000.0, 60),
        tick_sim.SimSymbol("LEUR", "mid", 1.08, 120),
        tick_sim.SimSymbol("LGBP", "mid", 1.27, 40),
    ]
    now = dt.datetime.now(UTC)
    start = (now - dt.timedelta(minutes=minutes + 5)).replace(second=0, microsecond=0)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        register(conn, [(s.symbol, s.price_kind) for s in sims], start)
        for s in sims:
            conn.execute(
                "SELECT tickagg.agg_task_set_delay(%s, '100 years', 'ticks_1m')", (s.symbol,)
            )
        conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (start,))
    runner = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "tickagg"), "--dsn", dsn, "--log-level", "WARNING",
         "run", "--workers", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(2)  # the runner's first pass over idle tasks
        t0 = time.monotonic()
        closes, sent = tick_sim.replay(dsn, sims, start, minutes, speed)
        real = time.monotonic() - t0
        time.sleep(3)
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        lat = tick_sim.close_latencies(conn, closes)
        late = conn.execute(
            "SELECT count(*) AS n FROM tickagg.data_bars WHERE source = 'live_gap_filled'"
        ).fetchone()["n"]
    print(f"\n== live latency: {len(sims)} symbols, {minutes} simulated minutes at {speed:g}x"
          f" ({real:.0f} s real), {sent:,} ticks, {len(closes)} minute closes ==")  # fmt: skip
    for tf in ("1m", "5m"):
        v = sorted(lat[tf])
        if not v:
            print(f"  {tf}: no samples")
            continue
        p50, p99 = tick_sim.percentile(v, 50), tick_sim.percentile(v, 99)
        print(f"  minute close -> {tf} bar committed: n={len(v):4d}  p50={p50 * 1000:7.1f} ms"
              f"  p99={p99 * 1000:7.1f} ms  max={v[-1] * 1000:7.1f} ms"
              f"  (goal p99 < {GOAL_P99_S * 1000:.0f} ms)")  # fmt: skip
    print(f"  bars rebuilt from late ticks: {late}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ingest-rows", type=int, default=1_000_000)
    ap.add_argument("--agg-ticks", type=int, default=2_000_000)
    ap.add_argument("--minutes", type=int, default=210)
    ap.add_argument("--speed", type=float, default=180.0)
    ap.add_argument("--skip", default="", help="comma list of: ingest, agg, latency")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with bench_database("tickagg_bench_ticks") as dsn:
        with psycopg.connect(dsn) as conn:
            print(server_info(conn))
        # latency first: the others leave millions of ticks whose tasks a daemon
        # would start catching up on (seconds of work on both CPUs)
        if "latency" not in skip:
            bench_latency(dsn, args.minutes, args.speed)
        if "ingest" not in skip:
            bench_ingest(dsn, args.ingest_rows)
        if "agg" not in skip:
            bench_aggregate(dsn, args.agg_ticks)


if __name__ == "__main__":
    main()
