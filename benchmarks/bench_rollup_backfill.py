"""Rollup catch-up of a backfill, as a user runs it: `tickagg run --until-idle`.

Starts a throwaway cluster, registers crypto symbols (`tickagg symbols add
--calendar crypto_24x7`), syncs with a start before the data, writes a CSV of 1m
bars ending near now (with gaps), lands it with `tickagg ingest bars`, then times
`tickagg run --until-idle` (default options; indicator and gap-scan tasks disabled
so only the seven rollup levels run) against the floor measured in the same
cluster: a bare INSERT ... SELECT ... GROUP BY of the 5m level into a keyed table
(the faster of the two first/last forms of _benchlib).
Goal (issue 16): all seven levels within 1.5x of that floor. Each repetition
starts again from the state the ingest left (no derived bars, cursors at the
start); statistics are refreshed or left stale per repetition, since plans must
not depend on them. Prints ratios and the per-level breakdown from ops_runlog;
asserts nothing.

    .venv/bin/python benchmarks/bench_rollup_backfill.py [--rows N] [--symbols S]
        [--reps R] [--workers W ...] [--idle-days D] [--profile]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
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
    timed,
)
from psycopg import sql  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

GOAL = 1.5
LEVELS = ["5m", "15m", "30m", "1h", "4h", "1d", "1w"]
TICKAGG = str(ROOT / ".venv" / "bin" / "tickagg")

PER_LEVEL_SQL = """
SELECT
    timeframe,
    count(*) AS runs,
    sum(bars_written) AS bars,
    sum(extract(EPOCH FROM finished_at - started_at)) AS busy_s,
    max(extract(EPOCH FROM finished_at - started_at)) AS slowest_s,
    extract(EPOCH FROM max(finished_at) - min(started_at)) AS span_s
FROM tickagg.ops_runlog
WHERE task_kind = 'rollup' AND started_at >= %(since)s
GROUP BY timeframe
"""

BEHIND_SQL = """
SELECT count(*) AS n
FROM tickagg.data_agg_state
WHERE task_kind = 'rollup' AND enabled AND last_agg_bar_ts_utc < now() - interval '2 weeks'
"""


def tickagg(dsn: str, *args: str) -> float:
    """Run a tickagg command as a user would; seconds taken."""
    env = {**os.environ, "TICKAGG_DSN": dsn}
    t0 = time.perf_counter()
    done = subprocess.run([TICKAGG, *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"tickagg {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return took


def write_csv(
    path: Path, symbols: list[str], rows: int, end: dt.datetime
) -> tuple[int, dt.datetime]:
    """1m bars of every symbol up to `end`, a random walk with a few holes; rows written."""
    rng = random.Random(16)
    minutes = rows // len(symbols)
    start = end - dt.timedelta(minutes=minutes)
    written = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume"])
        for n, sym in enumerate(symbols):
            # three holes of 1..180 minutes and ~0.2% single missing minutes
            holes = [(h, h + rng.randint(1, 180)) for h in rng.sample(range(minutes), 3)]
            price = 100.0 + 10 * n
            for m in range(minutes):
                if rng.random() < 0.002 or any(a <= m < b for a, b in holes):
                    continue
                o = price
                price = max(1.0, price + rng.gauss(0, 0.05))
                hi = max(o, price) + rng.random() * 0.02
                lo = min(o, price) - rng.random() * 0.02
                ts = start + dt.timedelta(minutes=m)
                w.writerow(
                    [sym, ts.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{o:.5f}", f"{hi:.5f}", f"{lo:.5f}",
                     f"{price:.5f}", rng.randint(1, 500)]
                )  # fmt: skip
                written += 1
    return written, start


def snapshot(conn: psycopg.Connection) -> None:
    """What the ingest left (tasks and invalidations), so every repetition starts there."""
    conn.execute("CREATE TABLE public.snap_state AS SELECT * FROM tickagg.data_agg_state")
    conn.execute("CREATE TABLE public.snap_inval AS SELECT * FROM tickagg.agg_invalidations")


def restore(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE tickagg.derived_data_bars, tickagg.agg_invalidations")
    conn.execute("DELETE FROM tickagg.data_agg_state")
    for table, snap in (("data_agg_state", "snap_state"), ("agg_invalidations", "snap_inval")):
        conn.execute(
            sql.SQL(
                "INSERT INTO tickagg.{} OVERRIDING SYSTEM VALUE SELECT * FROM public.{}"
            ).format(sql.Identifier(table), sql.Identifier(snap))
        )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() - interval '1 second' "
        "WHERE task_kind = 'rollup'"
    )


def run_floor(conn: psycopg.Connection) -> float:
    """The faster of the two ways to take open and close (see _benchlib)."""
    times = []
    for query in (BASELINE_SQL, BASELINE_ORDERED_SQL):
        conn.execute("TRUNCATE public.bench_5m")
        conn.execute("CHECKPOINT")
        times.append(timed(lambda q=query: conn.execute(q.format(where=""))))
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2, help="repetitions per statistics mode")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--idle-days", type=float, default=0, help="days between the last bar and now")
    ap.add_argument("--profile", action="store_true", help="pg_stat_statements (track=all)")
    args = ap.parse_args()

    if args.profile:
        from runner import embedded_pg

        embedded_pg.SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
        embedded_pg.SETTINGS["pg_stat_statements.track"] = "all"

    symbols = [f"CRYPTO{i:02d}" for i in range(args.symbols)]
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end = now - dt.timedelta(days=args.idle_days, minutes=2)
    with (
        tempfile.TemporaryDirectory(prefix="tickagg-rollup-") as tmp,
        bench_database("tickagg_bench_rollup") as dsn,
        psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn,
    ):
        print(server_info(conn))
        csv_path = Path(tmp) / "bars.csv"
        rows, start = write_csv(csv_path, symbols, args.rows, end)
        for sym in symbols:
            tickagg(dsn, "symbols", "add", sym, "--calendar", "crypto_24x7")
        tickagg(dsn, "sync", "--start", (start - dt.timedelta(days=3)).isoformat())
        t_ingest = tickagg(dsn, "ingest", "bars", str(csv_path))
        print(f"{rows:,} 1m bars of {len(symbols)} symbols, {start:%F %H:%M} to {end:%F %H:%M}")
        print(f"ingest bars: {t_ingest:.1f}s")
        # only the seven rollup levels run
        conn.execute(
            "UPDATE tickagg.data_agg_state SET enabled = false, disabled_by_user = true "
            "WHERE task_kind <> 'rollup'"
        )
        conn.execute(BASELINE_TABLE_SQL)
        if args.profile:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        snapshot(conn)

        results = []
        for rep in range(args.reps):
            for stats in ("as-ingested" if rep == 0 else "stale", "analyzed"):
                for workers in args.workers:
                    floor = run_floor(conn)
                    restore(conn)
                    if stats == "analyzed":
                        conn.execute("VACUUM ANALYZE")
                    conn.execute("CHECKPOINT")
                    if args.profile:
                        conn.execute("SELECT pg_stat_statements_reset()")
                    since = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
                    t_run = tickagg(dsn, "run", "--until-idle", "--workers", str(workers))
                    levels = {
                        r["timeframe"]: r for r in conn.execute(PER_LEVEL_SQL, {"since": since})
                    }
                    behind = conn.execute(BEHIND_SQL).fetchone()["n"]
                    results.append((stats, workers, floor, t_run, levels, behind))
                    print(
                        f"\n[{stats}, --workers {workers}] floor {floor:.2f}s, run --until-idle "
                        f"{t_run:.2f}s, ratio {t_run / floor:.2f} "
                        f"({'met' if t_run / floor <= GOAL else 'MISSED'} <= {GOAL}); "
                        f"tasks far behind afterwards: {behind}"
                    )
                    print("  level  runs      bars   busy s  slowest  span s")
                    for tf in LEVELS:
                        r = levels.get(tf)
                        if r:
                            print(
                                f"  {tf:>5} {r['runs']:>5} {r['bars']:>9,} {r['busy_s']:>8.2f} "
                                f"{r['slowest_s']:>8.3f} {r['span_s']:>7.2f}"
                            )
                    if args.profile:
                        top = conn.execute(
                            "SELECT calls, round(total_exec_time) AS ms, "
                            "left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q "
                            "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
                        ).fetchall()
                        for t in top:
                            print(f"    {t['ms']:>8} ms {t['calls']:>6}x  {t['q']}")

        print(f"\nsummary ({len(symbols)} symbols, {rows:,} rows, machine may be shared)")
        for workers in args.workers:
            ratios = [f"{r[3] / r[2]:.2f} ({r[0]})" for r in results if r[1] == workers]
            print(f"  --workers {workers}: ratio run/floor {', '.join(ratios)}")


if __name__ == "__main__":
    main()
