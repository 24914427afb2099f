"""Shared plumbing of the benchmarks: a database to run in, timing, captured plans.

Not a benchmark itself (the Makefile runs benchmarks/*.py, not this package).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.embedded_pg import EmbeddedPostgres  # noqa: E402
from runner.migrate import migrate  # noqa: E402

DSN_ENV = "TICKAGG_BENCH_DSN"

# The floor the catch-up goals are measured against: a bare INSERT ... SELECT ...
# GROUP BY of the 5m level into a plain keyed table, first/last by the same
# [epoch, price] array trick the engine uses. `where` narrows it (or is "").
BASELINE_TABLE_SQL = """
CREATE TABLE public.bench_5m (
    canonical_symbol text NOT NULL,
    ts_utc timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    vwap double precision,
    source_candles integer NOT NULL,
    PRIMARY KEY (canonical_symbol, ts_utc)
)
"""

BASELINE_SQL = """
INSERT INTO public.bench_5m
SELECT
    b.canonical_symbol,
    date_bin('5 minutes', b.ts_utc, timestamptz '2000-01-02 22:00:00+00'),
    (min(ARRAY[extract(EPOCH FROM b.ts_utc)::double precision, b.open]))[2],
    max(b.high),
    min(b.low),
    (max(ARRAY[extract(EPOCH FROM b.ts_utc)::double precision, b.close]))[2],
    sum(b.volume),
    sum(b.vwap * b.volume) / nullif(sum(b.volume), 0),
    count(*)
FROM tickagg.data_bars AS b
WHERE b.timeframe = '1m'{where}
GROUP BY 1, 2
"""

# The same floor with open/close taken as the engine takes them since issue 16
# (first and last element of an array aggregated in time order): a floor must
# not be slower than the engine's own way, so bench_backfill uses the faster.
BASELINE_ORDERED_SQL = """
INSERT INTO public.bench_5m
SELECT
    o.canonical_symbol, o.bucket, (array_agg(o.open))[1], max(o.high), min(o.low),
    (array_agg(o.close))[count(*)], sum(o.volume),
    sum(o.vwap * o.volume) / nullif(sum(o.volume), 0), count(*)
FROM (
    SELECT b.*, date_bin('5 minutes', b.ts_utc, timestamptz '2000-01-02 22:00:00+00') AS bucket
    FROM tickagg.data_bars AS b
    WHERE b.timeframe = '1m'{where}
    ORDER BY b.canonical_symbol, b.ts_utc
) AS o
GROUP BY 1, 2
"""


@contextlib.contextmanager
def bench_database(name: str, settings: dict[str, str] | None = None) -> Iterator[str]:
    """DSN of a fresh, migrated database `name_<random>`; dropped afterwards.

    With TICKAGG_BENCH_DSN set, the database is created on that server (the DSN
    must be allowed to CREATE DATABASE); otherwise a throwaway embedded cluster
    is started in a temporary directory under /tmp and removed at the end, with
    `settings` (e.g. a shared_preload_libraries of its own) on top of its defaults.
    """
    dbname = f"{name}_{uuid.uuid4().hex[:8]}"
    base = os.environ.get(DSN_ENV)
    if base:
        yield from _on_server(base, dbname)
        return
    with tempfile.TemporaryDirectory(prefix="tickagg-bench-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)  # as root the server runs as `postgres`, which must get in
        cluster = EmbeddedPostgres(Path(tmp) / "pg", settings=settings)
        cluster.start()
        try:
            dsn = cluster.ensure_database(dbname)
            migrate(dsn)
            yield dsn
        finally:
            cluster.stop()


@contextlib.contextmanager
def sibling_database(dsn: str, name: str) -> Iterator[str]:
    """Another fresh, migrated database on the server of `dsn` (which must be
    allowed to CREATE DATABASE); dropped afterwards."""
    yield from _on_server(dsn, f"{name}_{uuid.uuid4().hex[:8]}")


def _on_server(base: str, dbname: str) -> Iterator[str]:
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=dbname)
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def server_info(conn: psycopg.Connection) -> str:
    cur = conn.cursor(row_factory=tuple_row)
    version = cur.execute("SHOW server_version").fetchone()[0]
    settings = cur.execute(
        """
        SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)
        FROM pg_settings
        WHERE name IN ('shared_buffers', 'work_mem', 'fsync', 'synchronous_commit', 'jit',
                       'max_parallel_workers_per_gather')
        """
    ).fetchone()[0]
    return f"PostgreSQL {version}; {settings}; {os.cpu_count()} CPUs"


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


@contextlib.contextmanager
def captured_plans(conn: psycopg.Connection) -> Iterator[list[str]]:
    """Collect auto_explain output (ANALYZE, BUFFERS, nested statements) of what runs inside.

    auto_explain logs at LOG level; with client_min_messages = log the plans arrive
    as notices on this connection, so this works on any server we may LOAD on
    (superuser), without reading its log file.
    """
    plans: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        if diag.message_primary and diag.message_primary.startswith("duration:"):
            plans.append(diag.message_primary)

    conn.execute("LOAD 'auto_explain'")
    for name, value in (
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_buffers", "on"),
        ("auto_explain.log_timing", "on"),
        ("auto_explain.log_nested_statements", "on"),
        ("client_min_messages", "log"),
    ):
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    conn.add_notice_handler(on_notice)
    try:
        yield plans
    finally:
        conn.remove_notice_handler(on_notice)
        conn.execute("SET client_min_messages = notice")
        conn.execute("SET auto_explain.log_min_duration = -1")


def print_plan(title: str, plan: str) -> None:
    print(f"\n--- {title}")
    print(plan.rstrip())
