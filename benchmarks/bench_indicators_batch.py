"""The live indicators batch: cost per series of agg_run_indicators_batch (issue 24).

N crypto 5m series (default 2,500) hold --history derived bars each (inserted
straight into derived_data_bars), their indicators caught up by the runner. Each
round lands one new 5m bar per series in one statement (as a minute's rollup
batch writes them), makes the indicators tasks due, then claims batches
(agg_claim_batch, rollup_batch_size tasks of one timeframe) and runs each with
agg_run_indicators_batch until nothing is due, as the runner does.

  batch   the agg_run_indicators_batch statements of the round (the claims apart)
  floor   a bare INSERT ... SELECT of the round's N new bars' rows, looked up by
          their keys in derived_data_bars, into an unlogged table: reading and
          writing one row per series

Prints per round and the median: seconds, ms per series, ratio to the floor.
With --profile the cluster loads pg_stat_statements (track = all, track_planning)
and the statements of the timed rounds are printed by total execution time.
Asserts nothing about time.

    .venv/bin/python benchmarks/bench_indicators_batch.py [--series N] [--rounds R] [--profile]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import bench_database, server_info  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from runner import queries  # noqa: E402
from runner.loop import Runner, RunnerConfig  # noqa: E402

START = "2025-06-02 00:00:00+00"
START_TS = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)

REGISTER_SQL = """
SELECT tickagg.register_symbol(p_canonical_symbol => 'I' || lpad(i::text, 5, '0'),
                               p_calendar_code => 'crypto_24x7')
FROM generate_series(1, %(n)s) AS i
"""

# 5m bars [from, to) of every series, one statement: a wavy walk per series with
# a different phase, volume and a vwap inside the bar
BARS_SQL = """
INSERT INTO tickagg.derived_data_bars (canonical_symbol, timeframe, ts_utc, bucket_end, open,
    high, low, close, volume, vwap, trade_count, source_candles, expected_candles, quality_score,
    is_partial)
SELECT 'I' || lpad(i::text, 5, '0'), '5m', t, t + interval '5 minutes', o, greatest(o, c) + 0.2,
       least(o, c) - 0.2, c, 1 + (i * m) %% 50, (o + c) / 2, 5, 5, 5, 2, false
FROM generate_series(1, %(n)s) AS i
CROSS JOIN generate_series(%(from)s, %(to)s - 1) AS m
CROSS JOIN LATERAL (
    SELECT %(start)s::timestamptz + m * interval '5 minutes' AS t,
           100 + i %% 97 + 3 * sin((m - 1) / 7.0 + i) + (m - 1) / 50.0 AS o,
           100 + i %% 97 + 3 * sin(m / 7.0 + i) + m / 50.0 AS c
) AS v
"""

# the rows by their keys, as the batch reads each series' bars (by index)
FLOOR_SQL = """
INSERT INTO bench_floor
SELECT b.canonical_symbol, b.timeframe, b.ts_utc, b.bucket_end, b.open, b.high, b.low, b.close,
       b.volume, b.vwap
FROM generate_series(1, %(n)s) AS i
JOIN tickagg.derived_data_bars AS b
  ON b.canonical_symbol = 'I' || lpad(i::text, 5, '0') AND b.timeframe = '5m' AND b.ts_utc = %(ts)s
"""


def setup(conn: psycopg.Connection, n: int, history: int) -> None:
    conn.execute(REGISTER_SQL, {"n": n})
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET enabled = (task_kind = 'indicators' AND timeframe = '5m'),"
        " run_interval = interval '1 day', next_run_at = now()"
    )
    conn.execute(BARS_SQL, {"n": n, "start": START, "from": 0, "to": history})
    conn.execute("ANALYZE")
    conn.execute(
        "CREATE UNLOGGED TABLE bench_floor (s text, tf text, ts timestamptz, e timestamptz,"
        " o float8, h float8, l float8, c float8, v float8, vw float8)"
    )


def make_due(conn: psycopg.Connection) -> None:
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now()"
        " WHERE task_kind = 'indicators' AND enabled"
    )


def live_round(conn: psycopg.Connection, n: int, bar: int) -> tuple[float, int, int]:
    """Land bar number `bar` of every series, run the due indicators batches.
    Returns (seconds in agg_run_indicators_batch, tasks run, batches)."""
    conn.execute(BARS_SQL, {"n": n, "start": START, "from": bar, "to": bar + 1})
    make_due(conn)
    seconds, tasks, batches = 0.0, 0, 0
    while claimed := queries.claim_batch(conn, "prod", 600):
        run_ids = [uuid.uuid4() for _ in claimed]
        started_at = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
        t0 = time.perf_counter()
        rows = queries.agg_run_batch(conn, claimed, run_ids, started_at)
        seconds += time.perf_counter() - t0
        assert all(r["outcome"] == "success" for r in rows), rows[:3]
        tasks += len(rows)
        batches += 1
    return seconds, tasks, batches


def floor(conn: psycopg.Connection, n: int, bar: int) -> float:
    conn.execute("TRUNCATE bench_floor")
    t0 = time.perf_counter()
    conn.execute(FLOOR_SQL, {"n": n, "ts": START_TS + dt.timedelta(minutes=5 * bar)})
    return time.perf_counter() - t0


def print_profile(conn: psycopg.Connection, n_series: int) -> None:
    rows = conn.execute(
        "SELECT calls, total_exec_time, total_plan_time,"
        " left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q"
        " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
    ).fetchall()
    print("\npg_stat_statements of the timed rounds (ms per series; nested calls included):")
    for r in rows:
        print(
            f"  {r['calls']:7d} calls  exec {r['total_exec_time'] / n_series:7.3f}"
            f"  plan {r['total_plan_time'] / n_series:6.3f}  {r['q']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=2500)
    ap.add_argument("--history", type=int, default=400, help="5m bars per series before the rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="pg_stat_statements of the rounds")
    args = ap.parse_args()
    n = args.series
    settings = (
        {
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
            "pg_stat_statements.track_planning": "on",
        }
        if args.profile
        else None
    )
    with bench_database("tickagg_bench_indbatch", settings=settings) as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            t0 = time.perf_counter()
            setup(conn, n, args.history)
            warm = Runner(RunnerConfig(dsn=dsn, lease_seconds=600))
            warm.run_due()
            warm.pool.close()
            print(
                f"{n} series, {args.history} 5m bars each, indicators caught up"
                f" in {time.perf_counter() - t0:.1f}s"
            )
            bar = args.history
            live_round(conn, n, bar)  # warm-up (plans cached, pages in memory), not counted
            if args.profile:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
            rounds, floors = [], []
            for _ in range(args.rounds):
                bar += 1
                seconds, tasks, batches = live_round(conn, n, bar)
                floors.append(floor(conn, n, bar))
                rounds.append(seconds)
                print(
                    f"  batch {seconds:7.3f}s  tasks={tasks:5d} in {batches} batches"
                    f"  {1000 * seconds / n:6.3f} ms/series  floor {floors[-1]:.4f}s"
                )
            med, fl = statistics.median(rounds), statistics.median(floors)
            print(f"\nmedians over {args.rounds} rounds, {n} series (one new bar each):")
            print(f"  batch {med:7.3f}s  {1000 * med / n:6.3f} ms/series  {med / fl:7.1f}x floor")
            print(f"  floor {fl:7.4f}s  (bare INSERT ... SELECT of the new bars' rows by key)")
            if args.profile:
                print_profile(conn, n * args.rounds)


if __name__ == "__main__":
    main()
