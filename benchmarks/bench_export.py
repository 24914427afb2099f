"""ClickHouse export benchmark: ~1M one-minute bars from PostgreSQL into chdb, and
the daily-coverage gap query over ten years.

1. export: the engine's one-shot export (`clickhouse.export_once` per symbol: claim,
   export_batch, insert, export_advance + agg_finish, batches of 50,000) against a bare
   clickhouse-connect insert of the same rows (read from PostgreSQL beforehand, same
   client, same batch size, into a plain MergeTree copy of `aggregates`). rows/s, ratio.
2. gaps: ten years of 1m bars of one symbol inserted into `aggregates` (with holes);
   the days below 1440 minutes from `daily_bar_counts` (refreshable view over
   `aggregates FINAL`, db/clickhouse/050; the query tickagg uses) against the same
   question as a GROUP BY over `aggregates FINAL` (and without FINAL) and the older
   insert-time `daily_coverage` view. Also the time of one on-demand refresh.
Prints figures and ratios; asserts nothing but that both sides return the same answer.

    .venv/bin/python benchmarks/bench_export.py [--reps N] [--weeks W] [--years Y]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_catchup  # noqa: E402
import psycopg  # noqa: E402
from _benchlib import bench_database, median, server_info, timed  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from runner import clickhouse, db, queries  # noqa: E402

BATCH = 50_000

RESET_EXPORT_SQL = """
UPDATE tickagg.data_agg_state SET export_change_no = 0, status = 'idle', claim_token = NULL,
    lease_expires_at = NULL, next_run_at = now() - interval '1 second'
WHERE task_kind = 'export'
"""

GAP_LOAD_SQL = """
INSERT INTO aggregates (symbol, timeframe, timestamp, open, high, low, close, volume, vwap,
    trade_count, source, quality_score, source_candles, expected_candles, is_partial, version)
SELECT 'GAPS', '1m', toDateTime64('2015-01-01 00:00:00', 3, 'UTC') + toIntervalMinute(number),
    1.1, 1.2, 1.0, 1.1, 1, NULL, NULL, 'polygon_historical', 2, 1, 1, 0, number
FROM numbers({minutes:UInt64})
WHERE number % 1009 != 7 AND intDiv(number, 1440) % 97 != 3
"""

GAP_COUNTS_SQL = """
SELECT day, bars AS n FROM daily_bar_counts
WHERE symbol = 'GAPS' AND timeframe = '1m' AND bars < 1440
ORDER BY day
"""

GAP_MV_SQL = """
SELECT day, uniqExactMerge(bars) AS n FROM daily_coverage
WHERE symbol = 'GAPS' AND timeframe = '1m'
GROUP BY day HAVING n < 1440 ORDER BY day
"""

GAP_GROUP_BY_SQL = """
SELECT toDate(timestamp) AS day, count() AS n FROM aggregates {final}
WHERE symbol = 'GAPS' AND timeframe = '1m' AND is_deleted = 0
GROUP BY day HAVING n < 1440 ORDER BY day
"""


def export_engine(dsn: str, client) -> tuple[float, int]:
    client.command("TRUNCATE TABLE aggregates")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RESET_EXPORT_SQL)
    total = 0
    with db.make_pool(dsn, max_size=2) as pool:
        with pool.connection() as conn:
            syms = queries.export_symbols(conn)
        t0 = time.perf_counter()
        for s in syms:
            total += clickhouse.export_once(pool, client, s, BATCH)["rows"]
        return time.perf_counter() - t0, total


def read_rows(conn) -> tuple[float, list[list]]:
    t0 = time.perf_counter()
    now = clickhouse.dt.datetime.now(clickhouse.dt.UTC).replace(microsecond=0, tzinfo=None)
    horizon = queries.export_horizon_advance(conn)  # no writer runs: the sequence's value
    rows = []
    for s in queries.export_symbols(conn):
        batch = queries.export_batch(conn, s, 0, 10**8, horizon)
        rows += [clickhouse._row(s, r, now) for r in batch]
    return time.perf_counter() - t0, rows


def bare_insert(client, rows: list[list]) -> float:
    client.command("TRUNCATE TABLE bare_aggregates")
    t0 = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        client.insert("bare_aggregates", rows[i : i + BATCH], column_names=clickhouse.AGG_COLUMNS)
    return time.perf_counter() - t0


def bench_export(dsn: str, client, reps: int) -> None:
    client.command(
        "CREATE TABLE IF NOT EXISTS bare_aggregates AS aggregates"
        " ENGINE = MergeTree ORDER BY (symbol, timeframe, timestamp)"
    )
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        queries.sync_export_tasks(conn, "prod", bench_catchup.AGG_START)
        conn.execute("VACUUM ANALYZE tickagg.data_agg_state")
        read_s, rows = read_rows(conn)
    engine, bare = [], []
    for _ in range(reps):  # taking turns, so a busy spell hits both
        secs, n = export_engine(dsn, client)
        engine.append(secs)
        bare.append(bare_insert(client, rows))
    final = client.query("SELECT count() FROM aggregates FINAL").result_rows[0][0]
    if final != len(rows) or n != len(rows):
        raise RuntimeError(f"exported {n}, FINAL {final}, expected {len(rows)}")
    e, b = min(engine), min(bare)
    print(f"\n== export: {len(rows):,} 1m bars, 10 symbols, batches of {BATCH:,}; best of {reps}")
    print(f"{'':>28} {'seconds':>8} {'rows/s':>11}")
    print(f"{'engine (export_once)':>28} {e:>8.2f} {len(rows) / e:>11,.0f}")
    print(f"{'bare insert (rows in memory)':>28} {b:>8.2f} {len(rows) / b:>11,.0f}")
    print(f"{'PostgreSQL read (once)':>28} {read_s:>8.2f} {len(rows) / read_s:>11,.0f}")
    print(
        f"ratio engine / bare insert: {e / b:.2f}; engine / (read + insert): {e / (read_s + b):.2f}"
    )
    print("runs engine " + ", ".join(f"{x:.2f}" for x in engine))
    print("runs bare   " + ", ".join(f"{x:.2f}" for x in bare))


def bench_gaps(client, years: int, reps: int) -> None:
    minutes = years * 365 * 1440
    t = timed(lambda: client.command(GAP_LOAD_SQL, parameters={"minutes": minutes}))
    client.command("OPTIMIZE TABLE aggregates FINAL")
    client.command("OPTIMIZE TABLE daily_coverage FINAL")
    n = client.query("SELECT count() FROM aggregates").result_rows[0][0]
    print(f"\n== gaps: {n:,} 1m bars over {years} years ({t:.1f}s to insert, MV included)")
    refresh = [timed(lambda: clickhouse.refresh_views(client, ["daily_bar_counts_mv"]))
               for _ in range(3)]  # fmt: skip
    days = client.query("SELECT count() FROM daily_bar_counts").result_rows[0][0]
    print(f"daily_bar_counts: {days:,} rows; refresh (SYSTEM REFRESH + WAIT VIEW) median"
          f" {median(refresh):.2f}s of 3")  # fmt: skip

    def run(sql: str) -> tuple[list[float], list]:
        client.query(sql)  # warm-up
        times, res = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            res = client.query(sql).result_rows
            times.append(time.perf_counter() - t0)
        return times, res

    cnt_t, cnt = run(GAP_COUNTS_SQL)
    mv_t, mv = run(GAP_MV_SQL)
    fin_t, fin = run(GAP_GROUP_BY_SQL.format(final="FINAL"))
    raw_t, raw = run(GAP_GROUP_BY_SQL.format(final=""))
    if not (cnt == mv == fin == raw) or not cnt:
        raise RuntimeError("the gap queries disagree")
    m = median(cnt_t)
    print(f"{len(cnt)} days below 1440 minutes; median of {reps} (ms), ratio to daily_bar_counts")
    for name, ts in (("daily_bar_counts", cnt_t), ("GROUP BY aggregates FINAL", fin_t),
                     ("GROUP BY aggregates", raw_t),
                     ("daily_coverage (insert MV)", mv_t)):  # fmt: skip
        print(f"{name:>28} {median(ts) * 1000:>9.1f} {median(ts) / m:>7.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="export repetitions")
    ap.add_argument("--weeks", type=int, default=14, help="forex weeks per symbol (14 ~ 1M bars)")
    ap.add_argument("--years", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tickagg-bench-chdb-", dir="/tmp") as chdir:
        url = f"chdb://{chdir}/engine"
        with bench_database("tickagg_bench_export") as dsn:
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                print(server_info(conn))
                bench_catchup.setup(conn, args.weeks)
            client = clickhouse.connect(url, "bench_export")
            print(client.query("SELECT 'chdb ' || version()").result_rows[0][0])
            clickhouse.migrate(client)
            bench_export(dsn, client, args.reps)
        gaps = clickhouse.connect(url, "bench_gaps")
        clickhouse.migrate(gaps)
        bench_gaps(gaps, args.years, reps=9)


if __name__ == "__main__":
    main()
