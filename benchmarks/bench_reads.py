"""A day of one symbol through every read path, per timeframe, on default server settings.

Loads `--symbols` crypto symbols x `--days` days of 1m bars, catches up with
`tickagg run --until-idle` (default options, as a process), then reads one
symbol's last full day, `--reps` times each, through: the `ohlcv_*` view (plain
SQL, planning included: what a psql user or Grafana sends), `tickagg.bars_read`
(SQL), `tickagg.read_bars` (Python, pandas frame, one connection reused), and
the `tickagg bars` command as a process (CSV; Python's start-up included, printed
apart). Prints median and max milliseconds per path and timeframe, and whether
the server's JIT is on (the view's plan crosses jit_above_cost on stock
settings). Asserts nothing.

    .venv/bin/python benchmarks/bench_reads.py [--symbols 10] [--days 60] [--reps 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, median, server_info  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

sys.path.insert(0, str(ROOT))
import tickagg  # noqa: E402

TICKAGG = ROOT / ".venv" / "bin" / "tickagg"
VIEWS = {
    "5m": "ohlcv_5min",
    "15m": "ohlcv_15min",
    "30m": "ohlcv_30min",
    "1h": "ohlcv_1hour",
    "4h": "ohlcv_4hour",
    "1d": "ohlcv_1day",
    "1w": "ohlcv_1week",
}
LOAD_SQL = """
INSERT INTO tickagg.data_bars
    (canonical_symbol, ts_utc, open, high, low, close, volume, source, source_rank)
SELECT
    s.symbol, m.ts, p.price, p.price * 1.001, p.price * 0.999, p.price,
    1 + (extract(MINUTE FROM m.ts))::int,
    'polygon_historical', r.source_rank
FROM tickagg.bar_sources AS r
CROSS JOIN unnest(%(symbols)s::text[]) AS s (symbol)
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
    interval '1 minute') AS m (ts)
CROSS JOIN LATERAL (SELECT 100 + 10 * sin(extract(EPOCH FROM m.ts) / 3600.0) AS price) AS p
WHERE r.source = 'polygon_historical'
"""


def timed_ms(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    symbols = [f"RD{i:04d}" for i in range(args.symbols)]

    with bench_database("tickagg_bench_reads") as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            end = conn.execute("SELECT date_trunc('day', now()) AS d").fetchone()["d"]
            start = conn.execute(
                "SELECT %s::timestamptz - make_interval(days => %s) AS s", (end, args.days)
            ).fetchone()["s"]
            for s in symbols:
                conn.execute("SELECT tickagg.register_symbol(%s, 'crypto_24x7')", (s,))
            conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (start,))
            conn.execute(LOAD_SQL, {"symbols": symbols, "start": start, "end": end})
            conn.execute("VACUUM ANALYZE tickagg.data_bars")
        env = {**os.environ, "TICKAGG_DSN": dsn}
        t0 = time.perf_counter()
        subprocess.run(
            [str(TICKAGG), "run", "--until-idle"], env=env, check=True, capture_output=True
        )
        print(
            f"{len(symbols)} symbols x {args.days} days of 1m bars, caught up in "
            f"{time.perf_counter() - t0:.1f} s; reading {symbols[0]}'s last full day"
        )

        day = (end - dt.timedelta(days=1), end)
        with psycopg.connect(dsn, autocommit=True) as conn, tickagg_conn(dsn) as api_conn:
            print(f"{'timeframe':>9}  {'view':>14}  {'bars_read':>14}  {'read_bars':>14}  "
                  f"{'tickagg bars (process)':>22}")  # fmt: skip
            for timeframe, view in VIEWS.items():
                query = sql.SQL(
                    "SELECT * FROM tickagg.{} WHERE canonical_symbol = %s"
                    " AND bucket >= %s AND bucket < %s"
                ).format(sql.Identifier(view))
                views = timed_ms(
                    lambda q=query: conn.execute(q, (symbols[0], *day)).fetchall(), args.reps
                )
                direct = timed_ms(
                    lambda tf=timeframe: conn.execute(
                        "SELECT * FROM tickagg.bars_read(ARRAY[%s], %s, %s, %s)",
                        (symbols[0], tf, *day),
                    ).fetchall(),
                    args.reps,
                )
                api = timed_ms(
                    lambda tf=timeframe: tickagg.read_bars(api_conn, symbols[0], tf, *day),
                    args.reps,
                )
                cmd = [str(TICKAGG), "bars", "--symbol", symbols[0], "--timeframe", timeframe,
                       "--from", day[0].isoformat(), "--to", day[1].isoformat()]  # fmt: skip
                proc = timed_ms(
                    lambda c=cmd: subprocess.run(c, env=env, check=True, capture_output=True),
                    max(3, args.reps // 5),
                )
                print(
                    f"{timeframe:>9}  "
                    + "  ".join(f"{median(s):6.1f} /{max(s):6.1f}" for s in (views, direct, api))
                    + f"  {median(proc):10.0f} ms"
                )
        print("columns: median / max ms per read (planning and the round trip included)")


def tickagg_conn(dsn: str) -> psycopg.Connection:
    from runner import db

    return db.connect(dsn)


if __name__ == "__main__":
    main()
