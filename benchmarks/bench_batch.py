"""A market's minute boundary: per-task runs against batches (issue 24).

N bar-fed crypto symbols (default 2,000) hold 75 minutes of 1m bars, caught up
at every level. Each round, every symbol receives one new 1m bar, the last minute
of a 5m bucket, in one statement (as one ingest of the minute would land them),
and its 5m task is made due. Then the runner's own code (Runner.run_due: claim,
run, finish, log) runs until nothing is due: the 5m bars of every symbol, plus
the levels above that the 5m runs wake (they find no closed bucket).

  per-task  batch_size 1: one claim and one agg_run_rollup statement per task
            (the path before batches)
  batched   the default: agg_claim_batch takes up to rollup_batch_size tasks of
            one timeframe, agg_run_rollup_batch runs them in one statement
  floor     a bare INSERT ... SELECT ... GROUP BY of the same N 5m buckets from
            data_bars into an unlogged table: the set-based minimum

Rounds alternate between the two paths and each closes the 5m level alone (a
minute that also closes 15m buckets is landed and run between rounds, untimed).
Prints per round and median: seconds, tasks run, ms per symbol, and ratios to
the floor and between the paths. Asserts nothing about time. Buckets close by
their data, not the clock: the tasks get a 3000-day aggregation delay, so the
2025 timestamps are "live".

    .venv/bin/python benchmarks/bench_batch.py [--symbols N] [--rounds R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import bench_database, server_info  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from runner.loop import Runner, RunnerConfig  # noqa: E402

START = "2025-06-02 00:00:00+00"  # a Monday; the history is [START, START + 75 min)
START_TS = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
HISTORY_MINUTES = 75

REGISTER_SQL = """
SELECT tickagg.register_symbol(p_canonical_symbol => 'B' || lpad(i::text, 5, '0'),
                               p_calendar_code => 'crypto_24x7')
FROM generate_series(1, %(n)s) AS i
"""

# minutes [from, to) after START for every symbol, in one statement
BARS_SQL = """
INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume, vwap,
                               trade_count, source, source_rank)
SELECT 'B' || lpad(i::text, 5, '0'), %(start)s::timestamptz + m * interval '1 minute',
       100 + i + m / 64.0, 101 + i + m / 64.0, 99 + i + m / 64.0, 100.5 + i + m / 64.0,
       1 + (i * m) %% 50, 100.25 + i + m / 64.0, 3, 'polygon_historical', 0
FROM generate_series(1, %(n)s) AS i
CROSS JOIN generate_series(%(from)s, %(to)s - 1) AS m
"""

FLOOR_SQL = """
INSERT INTO bench_floor
SELECT b.canonical_symbol, date_bin('5 minutes', b.ts_utc, %(start)s::timestamptz) AS bucket,
       (array_agg(b.open ORDER BY b.ts_utc))[1], max(b.high), min(b.low),
       (array_agg(b.close ORDER BY b.ts_utc DESC))[1], sum(b.volume),
       sum(b.vwap * b.volume) / sum(b.volume), sum(b.trade_count), count(*)
FROM tickagg.data_bars AS b
WHERE b.timeframe = '1m' AND b.ts_utc >= %(from)s AND b.ts_utc < %(to)s
GROUP BY 1, 2
"""


def setup(conn: psycopg.Connection, n: int) -> None:
    conn.execute(REGISTER_SQL, {"n": n})
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind <> 'rollup'")
    # A task runs when it has work (made due below, or woken by its source's
    # finish), not every run_interval: with 14,000 tasks a minute's interval alone
    # would keep the runner busy (the scheduling half of issue 24).
    conn.execute(
        "UPDATE tickagg.data_agg_state SET aggregation_delay = interval '3000 days',"
        " run_interval = interval '1 day', next_run_at = now()"
    )
    conn.execute(BARS_SQL, {"n": n, "start": START, "from": 0, "to": HISTORY_MINUTES})
    conn.execute("ANALYZE")
    conn.execute(
        "CREATE UNLOGGED TABLE bench_floor (s text, b timestamptz, o float8, h float8, l float8,"
        " c float8, v float8, vw float8, tc bigint, n bigint)"
    )


def minute_boundary(conn, dsn: str, n: int, minute: int, batch_size: int | None) -> tuple:
    """Land minute `minute` (the last of its 5m bucket) for every symbol, make the
    5m tasks due, run until nothing is due. Returns (seconds, tasks run, 5m bars)."""
    conn.execute(BARS_SQL, {"n": n, "start": START, "from": minute, "to": minute + 1})
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE timeframe = '5m'"
        " AND task_kind = 'rollup'"
    )
    before = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars WHERE timeframe = '5m'"
    ).fetchone()["n"]
    runner = Runner(RunnerConfig(dsn=dsn, batch_size=batch_size, lease_seconds=600))
    t0 = time.perf_counter()
    tasks = runner.run_due()
    seconds = time.perf_counter() - t0
    runner.pool.close()
    after = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars WHERE timeframe = '5m'"
    ).fetchone()["n"]
    return seconds, len(tasks), after - before


def floor(conn, minute: int) -> float:
    """The bare GROUP BY of the N buckets that `minute` closed."""
    bucket = START_TS + dt.timedelta(minutes=minute // 5 * 5)
    conn.execute("TRUNCATE bench_floor")
    t0 = time.perf_counter()
    conn.execute(
        FLOOR_SQL, {"start": START, "from": bucket, "to": bucket + dt.timedelta(minutes=5)}
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per path")
    args = ap.parse_args()
    n = args.symbols
    with bench_database("tickagg_bench_batch") as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            t0 = time.perf_counter()
            setup(conn, n)
            warm = Runner(RunnerConfig(dsn=dsn, lease_seconds=600))
            warm.run_due()
            warm.pool.close()
            print(
                f"{n} symbols, {HISTORY_MINUTES} minutes of history caught up"
                f" in {time.perf_counter() - t0:.1f}s"
            )
            results: dict[str, list[tuple]] = {"per-task": [], "batched": []}
            floors = []
            minute = HISTORY_MINUTES + 4  # the last minute of the bucket after the history
            # warm-up round (plans cached, pages in memory), not counted
            conn.execute(BARS_SQL, {"n": n, "start": START, "from": HISTORY_MINUTES, "to": minute})
            minute_boundary(conn, dsn, n, minute, None)
            for _ in range(args.rounds):
                for name, size in (("per-task", 1), ("batched", None)):
                    minute += 5
                    if (minute + 1) % 15 == 0:
                        # this minute closes 15m buckets (and more) too: land it
                        # between the rounds, so every round closes the 5m level alone
                        conn.execute(
                            BARS_SQL, {"n": n, "start": START, "from": minute - 4, "to": minute}
                        )
                        minute_boundary(conn, dsn, n, minute, None)
                        minute += 5
                    conn.execute(
                        BARS_SQL, {"n": n, "start": START, "from": minute - 4, "to": minute}
                    )
                    seconds, tasks, bars = minute_boundary(conn, dsn, n, minute, size)
                    floors.append(floor(conn, minute))
                    results[name].append((seconds, tasks, bars))
                    print(
                        f"  {name:8s} {seconds:7.3f}s  tasks={tasks:5d}  5m bars={bars:5d}"
                        f"  {1000 * seconds / n:6.3f} ms/symbol  floor {floors[-1]:.3f}s"
                    )
            med = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
            fl = statistics.median(floors)
            print(f"\nmedians over {args.rounds} rounds, {n} symbols (one 5m bucket each):")
            for k, s in med.items():
                print(f"  {k:8s} {s:7.3f}s  {1000 * s / n:6.3f} ms/symbol  {s / fl:7.1f}x floor")
            print(f"  floor    {fl:7.3f}s  (bare INSERT ... SELECT ... GROUP BY of the buckets)")
            print(f"  per-task / batched: {med['per-task'] / med['batched']:.1f}x")


if __name__ == "__main__":
    main()
