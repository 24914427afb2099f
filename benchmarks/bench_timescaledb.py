"""TimescaleDB side by side: a TimescaleDB user's backfill against the floors and tickagg's.

The job DESIGN.md measures tickagg against, on the same file and server as
bench_backfill's (crypto 1-minute bars of --symbols symbols, with gaps):

    TimescaleDB     COPY into a hypertable (7-day chunks, keyed like data_bars),
                    then refresh seven hierarchical continuous aggregates
                    (5m from the hypertable, 15m from 5m, ... 1w from 1d)
    floor           a bare COPY of the file into a keyed table + the bare 5m
                    INSERT ... SELECT ... GROUP BY (bench_backfill's, faster of two)
    tickagg         `tickagg ingest bars FILE` + `tickagg run --until-idle` until
                    the last rollup of all 7 levels (and until indicators are done)

TA-Lib over the aggregates, the rest of a TimescaleDB user's job, is not run here.

Then the cost of a DELETE on data_bars (1 minute, 1 day, 7 days of one symbol of 4
weeks, rolled back; backend time from EXPLAIN ANALYZE, median of 7): with its
statement triggers on a plain table, with the collecting triggers `migrate
--timescaledb --compress-after` installs on the same plain table, and on a
compressed hypertable (where the batches are decompressed first).
Needs TimescaleDB on the server (the embedded cluster preloads it when the library
is installed; with TICKAGG_BENCH_DSN the server must preload it); without it the
program says so and exits 0. Asserts nothing.

    .venv/bin/python benchmarks/bench_timescaledb.py [--rows 1000000] [--symbols 10]
        [--no-tickagg]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import (  # noqa: E402
    BASELINE_ORDERED_SQL,
    BASELINE_SQL,
    bench_database,
    median,
    server_info,
    sibling_database,
    timed,
)
from bench_backfill import (  # noqa: E402
    COPY_BLOCK,
    COPY_SQL,
    COPY_TABLE_SQL,
    bare_copy,
    bare_group_by,
    rollups_done_at,
    user_path,
    write_csv,
)

from runner import timescaledb  # noqa: E402
from runner.embedded_pg import library_installed  # noqa: E402
from runner.migrate import migrate  # noqa: E402

SETTINGS = {"shared_preload_libraries": "timescaledb", "timescaledb.telemetry_level": "off"}

HYPERTABLE_SQL = (
    COPY_TABLE_SQL.replace("public.bench_copy", "public.ts_bars"),
    "SELECT public.create_hypertable('public.ts_bars', 'ts_utc',"
    " chunk_time_interval => interval '7 days')",
)

# (level, bucket width, source level); each level rolls up the one below, as
# tickagg's hierarchy does. vwap is kept as sum(vwap * volume) so it rolls up.
LEVELS = (
    ("5m", "5 minutes", None),
    ("15m", "15 minutes", "5m"),
    ("30m", "30 minutes", "15m"),
    ("1h", "1 hour", "30m"),
    ("4h", "4 hours", "1h"),
    ("1d", "1 day", "4h"),
    ("1w", "1 week", "1d"),
)

FROM_BARS_SQL = """
CREATE MATERIALIZED VIEW public.ts_{level}
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    canonical_symbol, public.time_bucket('{width}', ts_utc) AS bucket,
    public.first(open, ts_utc) AS open, max(high) AS high, min(low) AS low,
    public.last(close, ts_utc) AS close, sum(volume) AS volume,
    sum(vwap * volume) AS price_volume, count(*) AS source_candles
FROM public.ts_bars
GROUP BY 1, 2
WITH NO DATA
"""

FROM_LEVEL_SQL = """
CREATE MATERIALIZED VIEW public.ts_{level}
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    canonical_symbol, public.time_bucket('{width}', bucket) AS bucket,
    public.first(open, bucket) AS open, max(high) AS high, min(low) AS low,
    public.last(close, bucket) AS close, sum(volume) AS volume,
    sum(price_volume) AS price_volume, sum(source_candles) AS source_candles
FROM public.ts_{source}
GROUP BY 1, 2
WITH NO DATA
"""


def timescale_job(conn: psycopg.Connection, csv: Path) -> dict:
    """COPY into a hypertable, then refresh the seven levels bottom up; seconds each."""
    for statement in HYPERTABLE_SQL:
        conn.execute(statement)
    for level, width, source in LEVELS:
        template = FROM_BARS_SQL if source is None else FROM_LEVEL_SQL
        conn.execute(template.format(level=level, width=width, source=source))
    conn.execute("CHECKPOINT")
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(COPY_SQL.replace("bench_copy", "ts_bars")) as copy:
        with csv.open("rb") as fh:
            while block := fh.read(COPY_BLOCK):
                copy.write(block)
    out = {"copy": time.perf_counter() - t0}
    for level, _, _ in LEVELS:
        out[level] = timed(
            lambda level=level: conn.execute(
                f"CALL public.refresh_continuous_aggregate('public.ts_{level}', NULL, NULL)"
            )
        )
    out["rows_5m"] = conn.execute("SELECT count(*) FROM public.ts_5m").fetchone()[0]
    return out


DELETE_BARS_SQL = """
INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume,
                               source, source_rank)
SELECT 'BTC', g, 100, 101, 99, 100, 1, 'polygon_historical', 0
FROM generate_series(timestamptz '2025-03-01', '2025-03-28 23:59', interval '1 minute') AS g
"""
DELETE_SQL = (
    "EXPLAIN (ANALYZE) DELETE FROM tickagg.data_bars"
    " WHERE canonical_symbol = 'BTC' AND ts_utc >= '2025-03-10' AND ts_utc < %s"
)
DELETE_SPANS = (("1 minute", "2025-03-10 00:01"), ("1 day", "2025-03-11"), ("7 days", "2025-03-17"))


def delete_costs(dsn: str, storage: str) -> dict[str, float]:
    """Median backend milliseconds of each DELETE_SPANS delete, each rolled back."""
    if storage == "compressed hypertable":
        migrate(dsn, timescaledb=True, compress_after=dt.timedelta(days=30))
    with psycopg.connect(dsn, autocommit=True) as conn:
        if storage == "collecting, plain table":
            conn.execute("SELECT tickagg.data_bars_collect_deletes()")
        conn.execute("SELECT tickagg.register_symbol('BTC', 'crypto_24x7')")
        conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2025-03-01')")
        conn.execute(DELETE_BARS_SQL)
        if storage == "compressed hypertable":
            conn.execute(
                "SELECT public.compress_chunk(c) FROM public.show_chunks('tickagg.data_bars') AS c"
            )
        conn.execute("VACUUM ANALYZE tickagg.data_bars")
    out = {}
    with psycopg.connect(dsn) as conn:
        for span, end in DELETE_SPANS:
            samples = []
            for _ in range(7):
                plan = "\n".join(r[0] for r in conn.execute(DELETE_SQL, (end,)))
                conn.rollback()
                samples.append(float(re.search(r"Execution Time: ([\d.]+)", plan).group(1)))
            out[span] = median(samples)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--no-tickagg", action="store_true", help="skip tickagg's own path")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    if not library_installed("timescaledb"):
        print("TimescaleDB is not installed for this PostgreSQL server: nothing to compare")
        return
    symbols = [f"BF{i:04d}" for i in range(args.symbols)]
    with tempfile.TemporaryDirectory(prefix="tickagg-bench-timescaledb-") as tmp:
        csv = Path(tmp) / "bars.csv"
        rows, first = write_csv(csv, args.rows, symbols, args.seed)
        with bench_database("tickagg_bench_timescaledb", SETTINGS) as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                if not conn.execute(timescaledb.PRELOADED_SQL).fetchone()[0]:
                    sys.exit("this server does not preload TimescaleDB")
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public")
                print(server_info(conn))
                version = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()[0]
                copy_s = min(bare_copy(conn, csv) for _ in range(2))
                group_s = min(
                    bare_group_by(conn, query.replace("tickagg.data_bars", "public.bench_copy"))
                    for query in (BASELINE_SQL, BASELINE_ORDERED_SQL)
                    for _ in range(2)
                )
                conn.execute("DROP TABLE public.bench_copy, public.bench_5m")
                job = timescale_job(conn, csv)
            path = None if args.no_tickagg else user_path(dsn, csv, symbols, first, None)
            deletes = {}
            for storage in ("statement triggers, plain table", "collecting, plain table",
                            "compressed hypertable"):  # fmt: skip
                with sibling_database(dsn, "tickagg_bench_deletes") as other:
                    deletes[storage] = delete_costs(other, storage)

    floor = copy_s + group_s
    caggs = sum(job[level] for level, _, _ in LEVELS)
    print(f"\n== {rows:,} 1m rows of {len(symbols)} symbols; TimescaleDB {version}")
    print(f"floors: bare COPY {copy_s:.2f} s, bare 5m GROUP BY {group_s:.2f} s")
    print(f"{'step':<50} {'seconds':>8} {'ratio':>7}")
    lines = [
        ("TimescaleDB: COPY into the hypertable (vs COPY)", job["copy"], copy_s),
        *((f"TimescaleDB: refresh {lv} (vs GROUP BY)", job[lv], group_s) for lv, _, _ in LEVELS),
        ("TimescaleDB: the 7 refreshes (vs GROUP BY)", caggs, group_s),
        ("TimescaleDB: COPY + 7 refreshes (vs COPY + GROUP BY)", job["copy"] + caggs, floor),
    ]
    if path is not None:
        bars_at = path["ingest_s"] + rollups_done_at(path)
        lines += [
            ("tickagg: ingest bars (vs COPY)", path["ingest_s"], copy_s),
            ("tickagg: 7 rollup levels done (vs GROUP BY)", rollups_done_at(path), group_s),
            ("tickagg: ingest + 7 levels (vs COPY + GROUP BY)", bars_at, floor),
            (
                "tickagg: ingest + run, indicators too (same)",
                path["ingest_s"] + path["run_s"],
                floor,
            ),
        ]
    for name, secs, base in lines:
        print(f"{name:<50} {secs:8.2f} {secs / base:7.2f}")
    if path is not None:
        ratio = (path["ingest_s"] + rollups_done_at(path)) / (job["copy"] + caggs)
        print(f"\ntickagg's bars of every level took {ratio:.2f}x TimescaleDB's COPY + 7 refreshes")
    floor_ms = deletes["statement triggers, plain table"]
    print("\nDELETE FROM data_bars, backend ms (ratio to the statement triggers, plain table)")
    print(f"{'storage':<34}" + "".join(f"{span:>20}" for span, _ in DELETE_SPANS))
    for storage, ms in deletes.items():
        cells = "".join(f"{ms[s]:>11.2f} ({ms[s] / floor_ms[s]:4.2f}x)" for s, _ in DELETE_SPANS)
        print(f"{storage:<34}{cells}")


if __name__ == "__main__":
    main()
