"""Late-data benchmark: exact invalidation against rebuilding (issue 3).

With ~1M forex 1m bars (10 symbols x 14 weeks, loaded as bench_catchup.py does)
materialised in all seven timeframes:

(a) one late 1m bar for one symbol (a correction of an existing minute by a
    higher-ranked source; separately, a new minute in a hole), landed through
    the real ingest path, then the runner's own code (Runner.run_due) until
    nothing is due (every affected bucket in 5m..1w current) -- against a full
    rebuild of the same symbol (derived_rebuild_range for every timeframe over
    its whole range, in hierarchy order). Goal: the late path at least 1000x
    cheaper. Late bars are timed back to back (one per trading week), then each
    after 3 s with nothing running (a quiet day), then each is checked by a
    rebuild of its weeks; full rebuilds are timed apart, each followed by one more
    late bar, timed too. A late bar after a pause or after other work costs more
    than one right after another: the CPU's caches hold other things by then.
(b) a backfill of one symbol-month of late bars (held back before the first
    catch-up, inserted afterwards in one statement) -- against rebuilding that
    month with derived_rebuild_range.

Prints seconds, ratios and the derived rows each path rewrote per symbol (every
other symbol must show 0). Asserts nothing about time.

    .venv/bin/python benchmarks/bench_late_data.py [--symbols S] [--weeks W] [--reps N]

The issue's setting, one symbol holding 1,000,000 1m bars materialised, so that
"a full rebuild of the same symbol" rebuilds 1M bars: --symbols 1 --weeks 148.
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
from _benchlib import bench_database, server_info, timed  # noqa: E402
from bench_catchup import (  # noqa: E402  (the same ~1M-bar forex data set)
    AGG_START,
    FIRST_WEEK,
    LEVELS,
    LOAD_SQL,
    MINUTES_PER_WEEK,
    SYMBOLS,
)
from psycopg.rows import dict_row  # noqa: E402

from runner import queries  # noqa: E402
from runner.loop import Runner, RunnerConfig  # noqa: E402

TARGET = SYMBOLS[3]  # the symbol that gets the late bars in (a)
BACKFILL = SYMBOLS[1]  # the symbol whose month arrives late in (b)


def use_symbols(n: int) -> None:
    """Run with the first n bench symbols (--symbols 1 --weeks 148: one symbol
    holding 1M bars, so 'a full rebuild of the same symbol' rebuilds 1M bars)."""
    global SYMBOLS, TARGET, BACKFILL
    SYMBOLS = SYMBOLS[:n]
    TARGET = SYMBOLS[min(3, n - 1)]
    BACKFILL = SYMBOLS[min(1, n - 1)]


MONTH = ("2024-02-01 00:00:00+00", "2024-03-01 00:00:00+00")
GOAL = 1000.0

REBUILD_SQL = """
SELECT tickagg.derived_rebuild_range(
    p_canonical_symbol => %(symbol)s, p_timeframe => %(timeframe)s,
    p_from => %(from)s, p_to => %(to)s) AS r
"""


BENCH_DSN: str | None = None  # bench_database's DSN (conn.info.dsn has no password)
_RUNNER: Runner | None = None


def drive(conn: psycopg.Connection) -> dict:
    """The runner's own code (Runner.run_due: claim, then each run as one
    agg_run_rollup statement) until nothing is due, on the bench connection's
    database. Returns runs, bars written (cascaded levels included), the tasks run."""
    global _RUNNER
    if _RUNNER is None:
        cfg = RunnerConfig(dsn=BENCH_DSN or conn.info.dsn, max_windows=100000, lease_seconds=600)
        _RUNNER = Runner(cfg)  # its own pool, as `tickagg run` has
    runner = _RUNNER
    bars_before = runner.stats.bars_written
    failed_before = runner.stats.tasks_failed + runner.stats.leases_lost
    tasks = runner.run_due()
    assert runner.stats.tasks_failed + runner.stats.leases_lost == failed_before, runner.stats
    return {
        "claims": len(tasks),
        "bars": runner.stats.bars_written - bars_before,
        "tasks": [f"{t['canonical_symbol']}/{t['timeframe']}" for t in tasks],
    }


def rebuild(conn: psycopg.Connection, symbol: str, start: str, end: str) -> tuple[float, dict]:
    """derived_rebuild_range for every level, 5m first, one transaction each."""
    totals = {"buckets_rebuilt": 0, "bars_written": 0, "bars_deleted": 0}
    t0 = time.perf_counter()
    for tf in LEVELS:
        with conn.transaction():
            res = conn.execute(
                REBUILD_SQL, {"symbol": symbol, "timeframe": tf, "from": start, "to": end}
            ).fetchone()["r"]
        for k in totals:
            totals[k] += res[k]
    return time.perf_counter() - t0, totals


# Both read little (the sequence; idx_derived_data_bars_change per symbol): a scan
# of every derived bar between two late bars would time the late path with cold
# caches, which the cases after a full rebuild measure on purpose.
def max_change_no(conn: psycopg.Connection) -> int:
    """No derived bar written after this call has a change_no at or below it."""
    return conn.execute(
        "SELECT last_value - (NOT is_called)::int AS n FROM tickagg.bar_change_seq"
    ).fetchone()["n"]


def rewritten(conn: psycopg.Connection, since: int) -> dict[str, int]:
    return {
        sym: conn.execute(
            "SELECT count(*) AS n FROM tickagg.derived_data_bars"
            " WHERE canonical_symbol = %s AND change_no > %s",
            (sym, since),
        ).fetchone()["n"]
        for sym in SYMBOLS
    }


def ingest_one(conn: psycopg.Connection, symbol: str, ts, price: float, source: str) -> dict:
    """One bar through the real ingest path (staged COPY + ingest_staged_bars)."""
    with conn.transaction():
        queries.create_bars_stage(conn)
        with conn.cursor().copy(queries.COPY_BARS_STAGE) as cp:
            cp.write_row(
                (2, symbol, ts.isoformat(), repr(price), repr(price + 0.0003),
                 repr(price - 0.0003), repr(price + 0.0001), "42", source, repr(price), "7")
            )  # fmt: skip
        return queries.ingest_staged_bars(conn, "late.csv", source)


def setup(conn: psycopg.Connection, weeks: int) -> None:
    for sym in SYMBOLS:
        queries.register_symbol(conn, sym, "forex_24x5")
    queries.sync_agg_state_from_registry(conn, "prod", AGG_START)
    # rollups only (this measures them), and the data is history: buckets close at
    # the newest minute, not at now() - delay (see bench_catchup.py)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years',"
        " enabled = (task_kind = 'rollup')"
    )
    conn.execute("SELECT setseed(0.4242)")
    secs = timed(
        lambda: conn.execute(
            LOAD_SQL,
            {
                "symbols": len(SYMBOLS),
                "weeks": weeks,
                "first_week": FIRST_WEEK,
                "mpw": MINUTES_PER_WEEK,
            },
        )
    )
    # (b): one symbol's month is held back and arrives after the catch-up
    conn.execute(
        "CREATE TABLE public.held_month AS SELECT * FROM tickagg.data_bars"
        " WHERE canonical_symbol = %s AND ts_utc >= %s AND ts_utc < %s",
        (BACKFILL, *MONTH),
    )
    conn.execute(
        "DELETE FROM tickagg.data_bars"
        " WHERE canonical_symbol = %s AND ts_utc >= %s AND ts_utc < %s",
        (BACKFILL, *MONTH),
    )
    conn.execute("VACUUM ANALYZE tickagg.data_bars")
    n = conn.execute("SELECT count(*) AS n FROM tickagg.data_bars").fetchone()["n"]
    held = conn.execute("SELECT count(*) AS n FROM public.held_month").fetchone()["n"]
    print(f"loaded {n:,} 1m bars in {secs:.1f}s; {held:,} bars of {BACKFILL} {MONTH} held back")
    t0 = time.perf_counter()
    st = drive(conn)
    d = conn.execute("SELECT count(*) AS n FROM tickagg.derived_data_bars").fetchone()["n"]
    print(
        f"materialised all seven timeframes: {d:,} derived bars, {st['claims']} runs, "
        f"{time.perf_counter() - t0:.1f}s"
    )
    conn.execute("VACUUM ANALYZE tickagg.derived_data_bars, tickagg.data_agg_state")
    quiet(conn)


def quiet(conn: psycopg.Connection) -> None:
    """Nothing due by schedule: only what late data dirties runs."""
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 day'")


def late_minutes(conn: psycopg.Connection, reps: int) -> tuple[list, list]:
    """Existing minutes (for corrections) and holes (for inserts) of TARGET, spread
    over the history, away from its ends and outside (b)'s month."""
    existing = conn.execute(
        "SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = %s"
        " AND NOT (ts_utc >= %s AND ts_utc < %s)"
        " ORDER BY hashtextextended(ts_utc::text, 7) LIMIT %s",
        (TARGET, *MONTH, reps),
    ).fetchall()
    holes = conn.execute(
        """
        SELECT g.ts FROM (
            SELECT min(ts_utc) AS lo, max(ts_utc) AS hi
            FROM tickagg.data_bars WHERE canonical_symbol = %(s)s
        ) AS r
        CROSS JOIN LATERAL generate_series(r.lo, r.hi, interval '1 minute') AS g (ts)
        WHERE extract(ISODOW FROM g.ts) BETWEEN 1 AND 4
            -- (b)'s held-back month stays a hole until (b) lands it (with --symbols 1)
            AND NOT (g.ts >= %(m0)s AND g.ts < %(m1)s)
            AND NOT EXISTS (
                SELECT 1 FROM tickagg.data_bars AS b
                WHERE b.canonical_symbol = %(s)s AND b.timeframe = '1m' AND b.ts_utc = g.ts)
        ORDER BY hashtextextended(g.ts::text, 9) LIMIT %(n)s
        """,
        {"s": TARGET, "n": reps, "m0": MONTH[0], "m1": MONTH[1]},
    ).fetchall()
    return [r["ts_utc"] for r in existing], [r["ts"] for r in holes]


# before an "after idle" late bar nothing runs, longer than the pool's connection
# check waits (runner.db.CHECK_AFTER_IDLE_SECONDS), as on a quiet day
IDLE_SECONDS = 3.0


def one_late_bar(conn: psycopg.Connection, ts, source: str, idle: bool = False) -> dict:
    since = max_change_no(conn)
    if idle:
        time.sleep(IDLE_SECONDS)
    t_write = timed(lambda: ingest_one(conn, TARGET, ts, 1.3, source))
    inv = conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"]
    t0 = time.perf_counter()
    st = drive(conn)
    t_drive = time.perf_counter() - t0
    return {
        "write": t_write,
        "drive": t_drive,
        "total": t_write + t_drive,
        "runs": st["claims"],
        "tasks": st["tasks"],
        "invalidations": inv,
        "rewritten": rewritten(conn, since),
    }


def snapshot(conn: psycopg.Connection, symbol: str, start="-infinity", end="infinity") -> None:
    conn.execute("DROP TABLE IF EXISTS pg_temp.snap")
    conn.execute(
        "CREATE TEMP TABLE snap AS SELECT * FROM tickagg.derived_data_bars"
        " WHERE canonical_symbol = %s AND ts_utc >= %s AND ts_utc < %s",
        (symbol, start, end),
    )


COMPARED = """
SELECT d.timeframe, d.ts_utc,
       (d.bucket_end, d.trade_count, d.source_candles, d.expected_candles, d.quality_score,
        d.is_partial, d.deleted_at IS NULL)
           IS DISTINCT FROM
       (s.bucket_end, s.trade_count, s.source_candles, s.expected_candles, s.quality_score,
        s.is_partial, s.deleted_at IS NULL)
       OR greatest(abs(d.open - s.open), abs(d.high - s.high), abs(d.low - s.low),
                   abs(d.close - s.close), abs(d.volume - s.volume) / 1e6,
                   coalesce(abs(d.vwap - s.vwap), 0)) > 1e-9
       OR (d.vwap IS NULL) <> (s.vwap IS NULL) AS real_change,
       greatest(abs(d.volume - s.volume), 0) AS dvol, coalesce(abs(d.vwap - s.vwap), 0) AS dvwap
FROM tickagg.derived_data_bars AS d
JOIN pg_temp.snap AS s USING (canonical_symbol, timeframe, ts_utc)
WHERE d.change_no > %s
"""


def compare_snapshot(conn: psycopg.Connection, since: int) -> tuple[int, int]:
    """Bars a rebuild rewrote: (really different, different only in float rounding)."""
    rows = conn.execute(COMPARED, (since,)).fetchall()
    real = sum(1 for r in rows if r["real_change"])
    return real, len(rows) - real


def describe_rounding(conn: psycopg.Connection, since: int) -> str:
    rows = conn.execute(COMPARED, (since,)).fetchall()
    by_tf: dict[str, int] = {}
    for r in rows:
        by_tf[r["timeframe"]] = by_tf.get(r["timeframe"], 0) + 1
    return (
        ", ".join(f"{tf} {n}" for tf, n in by_tf.items())
        + f"; max |d volume| {max(r['dvol'] for r in rows):.3g},"
        f" max |d vwap| {max(r['dvwap'] for r in rows):.3g}"
    )


def fmt_rows(rw: dict[str, int]) -> str:
    return " ".join(f"{s[-2:]}:{n}" for s, n in rw.items())


def rebuild_finds_current(conn: psycopg.Connection, start, end) -> float:
    """Rebuild TARGET over [start, end) in every level; assert the late path left no
    bar stale there (the rebuild changes nothing beyond float rounding of sums).
    Returns the rebuild's seconds. Bars it rewrote for rounding dirty the levels
    above: settled, untimed, so the next case starts idle and current."""
    since = max_change_no(conn)
    snapshot(conn, TARGET, start, end)
    secs, totals = rebuild(conn, TARGET, start, end)
    stale, rounding = compare_snapshot(conn, since)
    assert stale == 0 and totals["bars_deleted"] == 0, ("the late path left a bucket stale", totals)
    if rounding:
        print(
            f"{'':>11} (the rebuild rewrote {rounding} bars that differed only in "
            f"float rounding of sums: {describe_rounding(conn, since)})"
        )
    drive(conn)
    quiet(conn)
    return secs


def late_row(kind: str, late: dict, note: str = "") -> None:
    print(
        f"{kind:>11} {late['write'] * 1e3:>9.1f} {late['drive'] * 1e3:>9.1f} "
        f"{late['total'] * 1e3:>9.1f} {late['runs']:>5}  {fmt_rows(late['rewritten'])}{note}"
    )
    others = sum(n for s, n in late["rewritten"].items() if s != TARGET)
    assert others == 0, late["rewritten"]


def one_per_week(minutes: list) -> list:
    """Minutes of distinct trading weeks: a later late bar's cascade redoes its
    week's 1w bar, which could hide a stale one an earlier bar left."""
    seen, out = set(), []
    for ts in minutes:
        week = (ts + dt.timedelta(hours=7)).isocalendar()[:2]  # forex weeks open Sunday 17:00 NY
        if week not in seen:
            seen.add(week)
            out.append(ts)
    return out


def part_a(conn: psycopg.Connection, reps: int) -> None:
    existing, holes = late_minutes(conn, 6 * reps)
    spread = one_per_week(existing + holes)
    existing = [ts for ts in existing if ts in spread]
    holes = [ts for ts in holes if ts in spread][:reps]
    derived_rows = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars WHERE canonical_symbol = %s",
        (TARGET,),
    ).fetchone()["n"]
    print(f"\n== (a) one late 1m bar for {TARGET} ({derived_rows:,} derived bars)")
    print("late bars back to back (one per trading week), then each checked by a rebuild of")
    print("its weeks (untimed):")
    print(f"{'case':>11} {'write ms':>9} {'drive ms':>9} {'total ms':>9} {'runs':>5}  "
          "derived rows rewritten per symbol")  # fmt: skip
    warm, rows, landed = [], [], []
    for kind, minutes, source in (
        ("correction", existing[:reps], "live_aggregated"),
        ("new minute", holes, "polygon_historical"),
    ):
        for ts in minutes:
            late = one_late_bar(conn, ts, source)
            late_row(kind, late)
            warm.append(late)
            rows.append(late["rewritten"])
            landed.append(ts)
    print(f"late bars each after {IDLE_SECONDS:.0f} s with nothing running, then checked alike:")
    idle = []
    for ts in existing[2 * reps : 3 * reps]:
        late = one_late_bar(conn, ts, "live_aggregated", idle=True)
        late_row("after idle", late)
        idle.append(late)
        landed.append(ts)
    for ts in landed:
        rebuild_finds_current(conn, ts - dt.timedelta(days=8), ts + dt.timedelta(days=8))

    print("full rebuilds of the symbol, each checked, then one late bar right after it:")
    full_range = ("-infinity", "infinity")
    rebuilds, cold = [], []
    for ts in existing[reps : 2 * reps]:
        rebuilds.append(rebuild_finds_current(conn, *full_range))
        late = one_late_bar(conn, ts, "live_aggregated")
        late_row("after one", late, f"   (rebuild {rebuilds[-1]:.3f} s)")
        cold.append(late)

    t_rebuild = statistics.median(rebuilds)
    print(f"full rebuild of {TARGET}: median {t_rebuild:.3f} s of {len(rebuilds)}; "
          "each found every bar current (no real change): a lower bound on its cost")  # fmt: skip
    cases = (("back to back", warm), (f"after {IDLE_SECONDS:.0f} s idle", idle),
             ("right after a full rebuild", cold))  # fmt: skip
    cases = tuple((label, lates) for label, lates in cases if lates)  # too few weeks for some
    for label, lates in cases:
        drive_ms = statistics.median(x["drive"] for x in lates)
        total_ms = statistics.median(x["total"] for x in lates)
        print(
            f"late bar, {label}: runner {drive_ms * 1e3:.2f} ms = {t_rebuild / drive_ms:.0f}x "
            f"cheaper than the rebuild; with the write of the bar {total_ms * 1e3:.2f} ms = "
            f"{t_rebuild / total_ms:.0f}x"
        )
    for label, lates in cases:
        ratio = t_rebuild / statistics.median(x["drive"] for x in lates)
        print(f"goal >= {GOAL:.0f}x, runner, {label}: {'met' if ratio >= GOAL else 'MISSED'}")
    print(f"tasks one late bar ran: {', '.join(warm[-1]['tasks'])}")
    # what a range-per-transaction design pays: every symbol recomputed over the range
    t_all = sum(rebuild(conn, sym, *full_range)[0] for sym in SYMBOLS)
    drive(conn)
    quiet(conn)
    print(
        f"full rebuild of all {len(SYMBOLS)} symbols: {t_all:.3f}s "
        f"= {t_all / statistics.median(x['drive'] for x in warm):.0f}x a late bar back to back; "
        "derived rows: "
        f"{derived_rows:,} of {TARGET} vs "
        f"{statistics.median(sum(r.values()) for r in rows):.0f} rewritten by the late path"
    )


def part_b(conn: psycopg.Connection, reps: int) -> None:
    held = conn.execute("SELECT count(*) AS n FROM public.held_month").fetchone()["n"]
    print(f"\n== (b) backfill of one symbol-month: {held:,} bars of {BACKFILL}, {MONTH}")
    # The rebuild, measured on the same state in a rolled-back transaction: the month
    # lands with its invalidations dropped, then every level is rebuilt over the month.
    rebuild_runs = []
    for _ in range(reps):
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO tickagg.data_bars SELECT * FROM public.held_month")
            conn.execute("DELETE FROM tickagg.agg_invalidations")
            since = max_change_no(conn)
            t0 = time.perf_counter()
            totals = {"bars_written": 0, "buckets_rebuilt": 0}
            for tf in LEVELS:
                res = conn.execute(
                    REBUILD_SQL,
                    {"symbol": BACKFILL, "timeframe": tf, "from": MONTH[0], "to": MONTH[1]},
                ).fetchone()["r"]
                totals["bars_written"] += res["bars_written"]
                totals["buckets_rebuilt"] += res["buckets_rebuilt"]
            rebuild_runs.append(time.perf_counter() - t0)
            rw_rebuild = rewritten(conn, since)
        conn.execute("VACUUM ANALYZE tickagg.data_bars, tickagg.derived_data_bars")
    quiet(conn)
    since = max_change_no(conn)
    t_insert = timed(
        lambda: conn.execute("INSERT INTO tickagg.data_bars SELECT * FROM public.held_month")
    )
    inv = conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"]
    t0 = time.perf_counter()
    st = drive(conn)
    t_drive = time.perf_counter() - t0
    rw_late = rewritten(conn, since)
    since2 = max_change_no(conn)
    t_noop, noop = rebuild(conn, BACKFILL, *MONTH)
    assert noop["bars_written"] == 0 and rewritten(conn, since2)[BACKFILL] == 0, noop
    best = min(rebuild_runs)
    late_total = t_insert + t_drive
    print(
        f"late path: insert {t_insert:.3f}s ({inv} invalidation rows), runner {t_drive:.3f}s "
        f"in {st['claims']} runs; total {late_total:.3f}s; rows rewritten {fmt_rows(rw_late)}"
    )
    print(
        f"rebuild of the month (7 levels, derived_rebuild_range): best {best:.3f}s of "
        f"{', '.join(f'{x:.3f}' for x in rebuild_runs)}; {totals['bars_written']:,} bars "
        f"written; rows rewritten {fmt_rows(rw_rebuild)}"
    )
    print(
        f"runner path / rebuild: {t_drive / best:.2f}x (insert + runner: {late_total / best:.2f}x);"
        f" a rebuild of the month once current: {t_noop:.3f}s, 0 rows"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weeks", type=int, default=14, help="forex weeks per symbol (14 ~ 1M bars)")
    ap.add_argument("--reps", type=int, default=3, help="late bars per case in (a); runs in (b)")
    ap.add_argument("--symbols", type=int, default=10, choices=range(1, 11), metavar="1..10")
    args = ap.parse_args()
    use_symbols(args.symbols)
    global BENCH_DSN
    with bench_database("tickagg_bench_late") as dsn:
        BENCH_DSN = dsn
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            try:
                setup(conn, args.weeks)
                part_a(conn, args.reps)
                part_b(conn, args.reps)
            finally:
                if _RUNNER is not None and _RUNNER.pool is not None:
                    _RUNNER.pool.close()


if __name__ == "__main__":
    main()
