"""Live latency at market scale (issue 24): a `tickagg run` daemon with default
options, in real time, against a market of bar-fed and tick-fed symbols.

- N bar-fed symbols, half on `us_equity`, half on `crypto_24x7`: one 1m bar each
  per minute, all of a minute in one call of the Python ingest API
  (runner.ingest.ingest_rows, the code path of `tickagg ingest bars`) one second
  after the minute ends, as a vendor's minute file would arrive.
- M tick-fed `crypto_24x7` symbols receiving T ticks/s in total, stamped with the
  wall clock, through tickagg.ingest_ticks every 100 ms (the path producers use).

Latency, per level (read from ops_runlog.finished_at, the clock_timestamp()
ops_log_run takes just before the run's commit):
- bar-fed: from the ingest's commit (the wall time its call returned) to the
  commit of the first successful rollup run of that symbol and level whose cursor
  passed the end of each bucket the minute closed, and to the later of that and
  the indicators run whose cursor passed it ("+ind");
- tick-fed: from the minute's end by the wall clock to the commit of the
  ticks_1m run that wrote its 1m bar, and of the 5m rollup run when it ends a 5m
  bucket.
Runs and CPU seconds per minute: ops_runlog rows by finished_at; CPU from
/proc/<pid>/stat (utime + stime) of the daemon process and of its database
sessions (pg_stat_activity.application_name = 'tickagg'; a session that ended
between two samples loses its last share). After the live minutes, --idle-minutes
with no new data: runs per idle minute against the task count.

Prints figures only; asserts nothing. The machine's other load shows in the CPU
figures: run it on a quiet machine for numbers to compare.

    .venv/bin/python benchmarks/bench_live_scale.py [--bar-symbols 5000]
        [--tick-symbols 1000] [--ticks-per-second 5000] [--minutes 10]
        [--idle-minutes 2] [--warmup-max 300] [--runner-args "--workers 2"]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, percentile, server_info  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from runner import queries  # noqa: E402
from runner.ingest import ingest_rows  # noqa: E402

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
BAR_DELAY_S = 1.0  # a minute's bars are ingested this long after it ends
TICK_STEP_S = 0.1
GOAL_BAR_P99_S = 2.0
GOAL_TICK_P99_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def connect(dsn: str) -> psycopg.Connection:
    # not application_name 'tickagg': that names the daemon's sessions
    return psycopg.connect(
        dsn, autocommit=True, row_factory=dict_row, application_name="bench_live_scale"
    )


# --- setup ----------------------------------------------------------------------


def bar_symbols(n: int) -> list[tuple[str, str]]:
    """(symbol, calendar): half us_equity, half crypto_24x7."""
    return [
        (f"BEQ{i:05d}", "us_equity") if i % 2 else (f"BCR{i:05d}", "crypto_24x7") for i in range(n)
    ]


def tick_symbols(n: int) -> list[str]:
    return [f"TCR{i:05d}" for i in range(n)]


def setup(dsn: str, bars: list[tuple[str, str]], ticks: list[str], start: dt.datetime) -> int:
    """Register and sync every symbol; returns the task count."""
    with connect(dsn) as conn:
        conn.execute(
            "INSERT INTO tickagg.core_asset_registry_all (canonical_symbol, asset_class,"
            " calendar_code) SELECT s, CASE c WHEN 'us_equity' THEN 'equity' ELSE 'crypto' END, c"
            " FROM unnest(%s::text[], %s::text[]) AS u (s, c)",
            ([s for s, _ in bars], [c for _, c in bars]),
        )
        for sym in ticks:
            queries.register_symbol(conn, sym, "crypto_24x7", source_kind="ticks")
        queries.sync_agg_state_from_registry(conn, "prod", start)
        conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (start,))
        conn.execute("VACUUM ANALYZE tickagg.data_agg_state, tickagg.core_asset_registry_all")
        return conn.execute("SELECT count(*) AS n FROM tickagg.data_agg_state").fetchone()["n"]


def due_now(conn) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state"
        " WHERE enabled AND status = 'idle' AND next_run_at <= now()"
    ).fetchone()["n"]


# --- load -------------------------------------------------------------------------


class BarFeed(threading.Thread):
    """At each minute end + BAR_DELAY_S, one ingest of every bar-fed symbol's bar
    of that minute; records (minute, commit wall time)."""

    def __init__(self, dsn: str, symbols: list[tuple[str, str]], first: dt.datetime, minutes: int):
        super().__init__(name="bar-feed", daemon=True)
        self.dsn, self.symbols, self.first, self.minutes = dsn, symbols, first, minutes
        self.commits: list[tuple[dt.datetime, dt.datetime, float]] = []  # minute, at, seconds
        self.errors: list[str] = []
        self.prices = {s: 100.0 + i % 50 for i, (s, _) in enumerate(symbols)}
        self.rng = random.Random(11)

    def rows(self, minute: dt.datetime):
        ts = minute.isoformat()
        for i, (sym, _) in enumerate(self.symbols):
            o = self.prices[sym]
            c = max(0.01, round(o * (1 + self.rng.gauss(0, 0.001)), 4))
            hi, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
            self.prices[sym] = c
            vol = float(self.rng.randint(1, 5000))
            yield (
                i + 2,
                sym,
                ts,
                repr(o),
                repr(hi),
                repr(lo),
                repr(c),
                repr(vol),
                None,
                None,
                None,
            )

    def run(self) -> None:
        with connect(self.dsn) as conn:
            for k in range(self.minutes):
                minute = self.first + k * MINUTE
                _sleep_until(minute + MINUTE + dt.timedelta(seconds=BAR_DELAY_S))
                t0 = time.monotonic()
                res = ingest_rows(conn, self.rows(minute), "live.csv", "polygon_historical")
                self.commits.append((minute, dt.datetime.now(UTC), time.monotonic() - t0))
                if res.get("rows_rejected"):
                    self.errors.append(f"{minute}: {res['rows_rejected']} rejected")


class TickFeed(threading.Thread):
    """ticks_per_second ticks in total over the symbols, stamped now, sent every
    TICK_STEP_S through tickagg.ingest_ticks, from `first` until `end`."""

    def __init__(self, dsn, symbols: list[str], rate: float, first: dt.datetime, end: dt.datetime):
        super().__init__(name="tick-feed", daemon=True)
        self.dsn, self.symbols, self.rate, self.first, self.end = dsn, symbols, rate, first, end
        self.sent = 0
        self.behind_s = 0.0  # how far the feed fell behind its schedule at worst

    def run(self) -> None:
        rng = random.Random(5)
        prices = {s: 1000.0 + i for i, s in enumerate(self.symbols)}
        _sleep_until(self.first)
        carry = 0.0
        with connect(self.dsn) as conn:
            step = 0
            t0 = time.monotonic()
            while dt.datetime.now(UTC) < self.end:
                step += 1
                carry += self.rate * TICK_STEP_S
                n, carry = int(carry), carry - int(carry)
                now = dt.datetime.now(UTC)
                batch = []
                for _ in range(n):
                    sym = self.symbols[rng.randrange(len(self.symbols))]
                    prices[sym] = max(0.01, round(prices[sym] * (1 + rng.gauss(0, 0.0002)), 5))
                    batch.append((sym, now, None, None, prices[sym], float(rng.randint(1, 20))))
                if batch:
                    queries.ingest_ticks(conn, batch)
                    self.sent += len(batch)
                pause = t0 + step * TICK_STEP_S - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    self.behind_s = max(self.behind_s, -pause)


def _sleep_until(at: dt.datetime) -> None:
    while (left := (at - dt.datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 0.5))


# --- CPU --------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class CpuSampler:
    """Cumulative CPU seconds of the daemon and of its database sessions."""

    def __init__(self, conn, daemon_pid: int):
        self.conn, self.daemon_pid = conn, daemon_pid
        self.backends: dict[int, float] = {}  # last value seen per session

    def sample(self) -> tuple[float, float]:
        for r in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'tickagg'"
        ):
            cpu = _cpu_seconds(r["pid"])
            if cpu is not None:
                self.backends[r["pid"]] = cpu
        for pid in list(self.backends):
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self.backends[pid] = cpu
        return _cpu_seconds(self.daemon_pid) or 0.0, sum(self.backends.values())


# --- results ----------------------------------------------------------------------

BAR_LATENCY_SQL = """
WITH closes AS (
    SELECT c.minute + interval '1 minute' AS bucket_end, c.committed_at
    FROM unnest(%(minutes)s::timestamptz[], %(commits)s::timestamptz[]) AS c (minute, committed_at)
), buckets AS (
    SELECT d.canonical_symbol, d.timeframe, d.bucket_end, c.committed_at,
           r.calendar_code
    FROM closes AS c
    JOIN tickagg.derived_data_bars AS d ON d.bucket_end = c.bucket_end
    JOIN tickagg.core_asset_registry_all AS r ON r.canonical_symbol = d.canonical_symbol
    WHERE d.canonical_symbol LIKE 'B%%' AND d.deleted_at IS NULL
)
SELECT b.timeframe, b.calendar_code,
       extract(epoch FROM bar.done - b.committed_at) AS bar_s,
       -- greatest() skips a NULL: a bucket whose indicators never ran has no +ind
       CASE WHEN ind.done IS NOT NULL
           THEN extract(epoch FROM greatest(bar.done, ind.done) - b.committed_at) END AS ind_s
FROM buckets AS b
CROSS JOIN LATERAL (
    SELECT min(l.finished_at) AS done FROM tickagg.ops_runlog AS l
    WHERE l.canonical_symbol = b.canonical_symbol AND l.timeframe = b.timeframe
      AND l.task_kind = 'rollup' AND l.outcome = 'success' AND l.cursor_to >= b.bucket_end
      AND l.started_at >= %(since)s
) AS bar
CROSS JOIN LATERAL (
    SELECT min(l.finished_at) AS done FROM tickagg.ops_runlog AS l
    WHERE l.canonical_symbol = b.canonical_symbol AND l.timeframe = b.timeframe
      AND l.task_kind = 'indicators' AND l.outcome = 'success' AND l.cursor_to >= b.bucket_end
      AND l.started_at >= %(since)s
) AS ind
"""

TICK_LATENCY_SQL = """
WITH minutes AS (
    SELECT DISTINCT b.canonical_symbol, b.ts_utc AS minute
    FROM tickagg.data_bars AS b
    WHERE b.canonical_symbol LIKE 'T%%' AND b.ts_utc >= %(first)s AND b.ts_utc < %(end)s
)
SELECT '1m' AS timeframe,
       extract(epoch FROM (SELECT min(l.finished_at) FROM tickagg.ops_runlog AS l
            WHERE l.canonical_symbol = m.canonical_symbol AND l.timeframe = '1m'
              AND l.task_kind = 'ticks_1m' AND l.outcome = 'success'
              AND l.cursor_from <= m.minute AND l.cursor_to > m.minute
              AND l.started_at >= %(since)s) - (m.minute + interval '1 minute')) AS s
FROM minutes AS m
UNION ALL
SELECT '5m',
       extract(epoch FROM (SELECT min(l.finished_at) FROM tickagg.ops_runlog AS l
            WHERE l.canonical_symbol = d.canonical_symbol AND l.timeframe = '5m'
              AND l.task_kind = 'rollup' AND l.outcome = 'success'
              AND l.cursor_to >= d.bucket_end AND l.started_at >= %(since)s) - d.bucket_end)
FROM tickagg.derived_data_bars AS d
WHERE d.canonical_symbol LIKE 'T%%' AND d.timeframe = '5m'
  AND d.bucket_end > %(first)s AND d.bucket_end <= %(end)s
"""

RUNS_PER_MINUTE_SQL = """
SELECT date_trunc('minute', finished_at) AS minute, task_kind, count(*) AS runs,
       sum(bars_written) AS bars,
       count(*) FILTER (WHERE bars_written = 0) AS empty_runs
FROM tickagg.ops_runlog
WHERE finished_at >= %(from)s AND finished_at < %(to)s
GROUP BY 1, 2 ORDER BY 1, 2
"""

# a batch's tasks share one started_at: its busy time is counted once
RUN_PROFILE_SQL = """
WITH calls AS (
    SELECT task_kind, timeframe, started_at, count(*) AS runs, sum(bars_written) AS bars,
           max(finished_at) - started_at AS busy
    FROM tickagg.ops_runlog
    WHERE finished_at >= %(from)s AND finished_at < %(to)s
    GROUP BY task_kind, timeframe, started_at
)
SELECT task_kind, timeframe, sum(runs) AS runs, count(*) AS calls, sum(bars) AS bars,
       extract(epoch FROM sum(busy)) AS busy_s
FROM calls GROUP BY 1, 2 ORDER BY busy_s DESC
"""

STATEMENTS_SQL = """
SELECT calls, total_exec_time / 1000 AS total_s,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT 15
"""

LEVELS = ("5m", "15m", "30m", "1h", "4h", "1d", "1w")


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    v = sorted(values)
    return (
        f"n={len(v):6d}  p50={percentile(v, 50) * 1000:8.0f}  p99={percentile(v, 99) * 1000:8.0f}"
        f"  max={v[-1] * 1000:8.0f} ms"
    )


def report_bar_latency(conn, feed: BarFeed, since: dt.datetime) -> None:
    rows = conn.execute(
        BAR_LATENCY_SQL,
        {
            "minutes": [m for m, _, _ in feed.commits],
            "commits": [c for _, c, _ in feed.commits],
            "since": since,
        },
    ).fetchall()
    ingest_s = sorted(s for _, _, s in feed.commits)
    print(
        f"\n== bar-fed: {len(feed.symbols):,} symbols, {len(feed.commits)} minutes ingested"
        f" (ingest call p50 {percentile(ingest_s, 50):.2f} s, max {ingest_s[-1]:.2f} s)"
        if ingest_s
        else "\n== bar-fed: nothing ingested"
    )
    print("   ingest commit -> bucket committed (bar) / with its indicators (+ind);"
          f" goal p99 < {GOAL_BAR_P99_S * 1000:.0f} ms")  # fmt: skip
    for cal in ("crypto_24x7", "us_equity"):
        of_cal = [r for r in rows if r["calendar_code"] == cal]
        if not of_cal:
            print(f"  {cal}: no bucket closed (none ended in these minutes, or market closed)")
            continue
        for tf in LEVELS:
            sel = [r for r in of_cal if r["timeframe"] == tf]
            if not sel:
                continue
            bar = [float(r["bar_s"]) for r in sel if r["bar_s"] is not None]
            ind = [float(r["ind_s"]) for r in sel if r["ind_s"] is not None]
            unseen = len(sel) - len(ind)
            print(f"  {cal:11s} {tf:>3s}  bar  {_stats(bar)}")
            print(
                f"  {'':11s} {'':>3s}  +ind {_stats(ind)}"
                + (f"  ({unseen} without a finished run)" if unseen else "")
            )
    if feed.errors:
        print("  ingest problems:", "; ".join(feed.errors[:5]))


def report_tick_latency(conn, feed: TickFeed, first, end, since) -> None:
    rows = conn.execute(TICK_LATENCY_SQL, {"first": first, "end": end, "since": since}).fetchall()
    print(
        f"\n== tick-fed: {len(feed.symbols):,} symbols, {feed.sent:,} ticks"
        f" ({feed.sent / max(1.0, (end - first).total_seconds()):,.0f}/s; the feed fell behind"
        f" by {feed.behind_s:.2f} s at worst)"
    )
    print(
        f"   minute end (wall clock) -> bar committed; goal p99 < {GOAL_TICK_P99_S * 1000:.0f} ms"
    )
    for tf in ("1m", "5m"):
        sel = [r["s"] for r in rows if r["timeframe"] == tf]
        done = [float(s) for s in sel if s is not None]
        missing = len(sel) - len(done)
        print(
            f"  minute close -> {tf} bar  {_stats(done)}"
            + (f"  ({missing} without a finished run)" if missing else "")
        )


def report_minutes(conn, title, windows, cpu, task_count) -> float:
    """windows: [(from, to)]; cpu: [(daemon s, sessions s)] at each window's edges.
    Returns the mean runs per minute."""
    print(f"\n== {title}: runs and CPU per minute (tasks: {task_count:,}) ==")
    print(
        f"  {'minute':8s} {'runs':>7s} {'empty':>7s} {'bars':>7s} {'daemon CPU':>11s}"
        f" {'sessions CPU':>13s}  runs by kind"
    )
    per_minute = []
    for i, (lo, hi) in enumerate(windows):
        rows = conn.execute(RUNS_PER_MINUTE_SQL, {"from": lo, "to": hi}).fetchall()
        runs = sum(r["runs"] for r in rows)
        empty = sum(r["empty_runs"] for r in rows)
        bars = sum(int(r["bars"] or 0) for r in rows)
        kinds: dict[str, int] = {}
        for r in rows:
            kinds[r["task_kind"]] = kinds.get(r["task_kind"], 0) + r["runs"]
        d_cpu = cpu[i + 1][0] - cpu[i][0]
        s_cpu = cpu[i + 1][1] - cpu[i][1]
        scale = 60 / (hi - lo).total_seconds()
        per_minute.append(runs * scale)
        print(
            f"  {lo:%H:%M}    {runs * scale:7.0f} {empty * scale:7.0f} {bars * scale:7.0f}"
            f" {d_cpu * scale:9.1f} s {s_cpu * scale:11.1f} s  "
            + " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
        )
    return sum(per_minute) / len(per_minute) if per_minute else 0.0


def reset_statements(conn) -> None:
    """pg_stat_statements from the first live minute on, when the server loads it."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
    except psycopg.Error:
        pass  # not loaded (shared_preload_libraries): the profile leaves it out


def report_profile(conn, lo, hi) -> None:
    """Where the live minutes' time went: ops_runlog per kind and level, and the
    top statements when the server has pg_stat_statements loaded."""
    rows = conn.execute(RUN_PROFILE_SQL, {"from": lo, "to": hi}).fetchall()
    print(
        f"\n== profile of the live minutes ({lo:%H:%M}-{hi:%H:%M}):"
        " ops_runlog per kind and level =="
    )
    print(f"  {'kind':11s} {'level':>5s} {'runs':>8s} {'calls':>7s} {'bars':>8s} {'busy s':>8s}")
    for r in rows:
        print(
            f"  {r['task_kind']:11s} {r['timeframe']:>5s} {int(r['runs']):8d} {r['calls']:7d}"
            f" {int(r['bars'] or 0):8d} {float(r['busy_s']):8.1f}"
        )
    try:
        statements = conn.execute(STATEMENTS_SQL).fetchall()
    except psycopg.Error:
        return  # pg_stat_statements not loaded on this server
    print(
        "\n== pg_stat_statements from the first live minute to the end (track as the server"
        " sets it): top by total time =="
    )
    for r in statements:
        print(f"  {int(r['calls']):8d} {float(r['total_s']):8.1f} s  {r['query']}")


# --- main -------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bar-symbols", type=int, default=5000)
    ap.add_argument("--tick-symbols", type=int, default=1000)
    ap.add_argument("--ticks-per-second", type=float, default=5000)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--idle-minutes", type=int, default=2)
    ap.add_argument(
        "--warmup-max",
        type=float,
        default=300,
        help="longest wait (s) for the daemon's first pass over every task",
    )
    ap.add_argument("--runner-args", default="", help="extra `tickagg run` options (default none)")
    ap.add_argument(
        "--tickagg",
        default=str(ROOT / ".venv" / "bin" / "tickagg"),
        help="the tickagg executable of the daemon (another checkout's, to compare builds)",
    )
    args = ap.parse_args()
    bars, ticks = bar_symbols(args.bar_symbols), tick_symbols(args.tick_symbols)
    with bench_database("tickagg_bench_live") as dsn, connect(dsn) as conn:
        print(server_info(conn))
        # from the hour: the live minutes close whole 5m, 15m and 30m buckets
        agg_start = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        t0 = time.monotonic()
        task_count = setup(dsn, bars, ticks, agg_start)
        print(
            f"setup: {len(bars):,} bar-fed + {len(ticks):,} tick-fed symbols, {task_count:,} tasks,"
            f" agg_start {agg_start:%H:%M} UTC ({time.monotonic() - t0:.1f} s)"
        )
        with tempfile.TemporaryDirectory(prefix="tickagg-bench-live-") as tmp:
            log_path = Path(tmp) / "runner.log"
            cmd = [args.tickagg, "--dsn", dsn, "run"]
            cmd += shlex.split(args.runner_args)
            with log_path.open("w") as log_file:
                daemon = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=log_file)
            try:
                run(conn, dsn, args, bars, ticks, daemon, task_count, agg_start)
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                text = log_path.read_text(errors="replace")
                crashes = text.count("Traceback")
                print(f"\ndaemon: exit {daemon.returncode}, {len(text.splitlines()):,} log lines"
                      f"{f', {crashes} tracebacks' if crashes else ''}")  # fmt: skip


def run(conn, dsn, args, bars, ticks, daemon, task_count, agg_start) -> None:
    print(f"daemon: {' '.join(daemon.args[3:])} (pid {daemon.pid})")
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.warmup_max:
        if daemon.poll() is not None:
            raise SystemExit("the daemon exited during the warm-up")
        if due_now(conn) == 0:
            break
        time.sleep(1)
    left = due_now(conn)
    print(
        f"warm-up (the daemon's first pass over every task): {time.monotonic() - t0:.0f} s,"
        f" {left:,} tasks still due"
    )
    first = dt.datetime.now(UTC).replace(second=0, microsecond=0) + MINUTE
    end = first + args.minutes * MINUTE
    since = dt.datetime.now(UTC)
    bar_feed = BarFeed(dsn, bars, first, args.minutes)
    tick_feed = TickFeed(dsn, ticks, args.ticks_per_second, first, end) if ticks else None
    sampler = CpuSampler(conn, daemon.pid)
    _sleep_until(first)
    reset_statements(conn)
    cpu = [sampler.sample()]
    bar_feed.start()
    if tick_feed:
        tick_feed.start()
    edges = [first + k * MINUTE for k in range(args.minutes + args.idle_minutes + 1)]
    # the last live minute's bars land BAR_DELAY_S after `end`: the idle minutes start
    # with the first whole minute after that
    for edge in edges[1:]:
        _sleep_until(edge)
        cpu.append(sampler.sample())
        if daemon.poll() is not None:
            raise SystemExit("the daemon exited")
    bar_feed.join(timeout=120)
    if tick_feed:
        tick_feed.join(timeout=30)
    windows = list(zip(edges[:-1], edges[1:], strict=True))
    live = args.minutes
    report_bar_latency(conn, bar_feed, since)
    if tick_feed:
        report_tick_latency(conn, tick_feed, first, end, since)
    report_minutes(conn, f"live ({live} min)", windows[:live], cpu[: live + 1], task_count)
    report_profile(conn, first, end)
    if args.idle_minutes > 1:
        # the first minute after the feeds stop still runs what the last minute closed
        idle = windows[live + 1 :]
        print(
            f"\n   idle: no new data; the first idle minute ({windows[live][0]:%H:%M}) is left"
            " out: it still runs what the last live minute closed"
        )
        runs = report_minutes(conn, "idle", idle, cpu[live + 1 :], task_count)
        print(
            f"  idle runs per minute: {runs:,.0f} = {100 * runs / task_count:.1f}% of the"
            f" {task_count:,} tasks (goal < 1%)"
        )


if __name__ == "__main__":
    main()
