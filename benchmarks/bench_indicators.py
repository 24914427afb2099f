"""Indicator benchmark: the indicators catch-up against the rollups' and TA-Lib.

Backfill (issue 16's goal): --symbols crypto_24x7 symbols with --minutes
1-minute bars each (default 10 x 100,000 = 1M rows) loaded into data_bars;
then the rollup tasks of all 7 levels catch up (claim, catchup_aggregation_range,
agg_finish: what the runner calls), then the indicators tasks over the same
derived bars (claim, indicators_step, agg_finish). Prints both times, the
microseconds per derived bar and the ratio indicators / rollups.

Deep series: one symbol on crypto_24x7 with N 5-minute bars of a random walk (default
1,000,000, ~9.5 years), loaded straight into derived_data_bars with one
INSERT ... SELECT. Measures:

* catch-up: indicators_step from the first bar to the last in runs of
  --chunk bars (the task's max bars per run), every indicator of the set,
  results written, checkpoints kept;
* the baseline in the same process: one single pass of TA-Lib over the same
  arrays for the same set (SMA/EMA x5, RSI, MACD, BBANDS, ATR, STOCH, CCI, MFI,
  OBV, AD, ADX, +DI, -DI; the day vwap as a numpy cumulative sum), reading the
  arrays from PostgreSQL not included; the ratio of the two;
* the live step: one new bar inserted, then one indicators_step (a claimed run's
  work), repeated; median milliseconds per new bar.

Checks that the last bars agree with TA-Lib (relative error < 1e-9).

    .venv/bin/python benchmarks/bench_indicators.py [--symbols N] [--minutes N]
        [--bars N] [--chunk N] [--live N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
import talib  # noqa: E402
from _benchlib import bench_database, median, server_info, timed  # noqa: E402
from bench_catchup import CATCHUP_SQL, CLAIM_SQL, FINISH_SQL  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

SYMBOL = "BENCHIND"
START = "2015-01-05 00:00+00"

LOAD_SQL = """
SELECT setseed(0.7);
INSERT INTO tickagg.derived_data_bars (
    canonical_symbol, timeframe, ts_utc, bucket_end, open, high, low, close, volume, vwap,
    trade_count, source_candles, expected_candles, quality_score, is_partial
)
SELECT
    'BENCHIND', '5m', b.ts, b.ts + interval '5 minutes', b.o,
    greatest(b.o, b.c) * (1 + b.a * 0.002), least(b.o, b.c) * (1 - b.u * 0.002), b.c, b.v,
    (b.o + b.c) / 2, NULL, 5, 5, 2, false
FROM (
    SELECT w.*, lag(w.c, 1, w.c) OVER (ORDER BY w.g) AS o
    FROM (
        SELECT s.*, 100 * exp(sum(s.r) OVER (ORDER BY s.g)) AS c
        FROM (
            SELECT
                g, timestamptz '2015-01-05 00:00+00' + g * interval '5 minutes' AS ts,
                (random() - 0.5) * 0.004 AS r, random() AS a, random() AS u, 1 + random() * 999 AS v
            FROM generate_series(0, %(bars)s - 1) AS g
        ) AS s
    ) AS w
) AS b
"""

STEP = "SELECT tickagg.indicators_step(%s, '5m', %s, %s) AS r"

BACKFILL_START = "2024-01-01 00:00+00"

# A random walk of 1-minute bars per symbol, every minute from BACKFILL_START.
BACKFILL_LOAD_SQL = """
INSERT INTO tickagg.data_bars (
    canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, source, source_rank
)
SELECT
    w.sym, '1m', w.ts, w.o,
    greatest(w.o, w.c) * (1 + w.a * 0.001), least(w.o, w.c) * (1 - w.u * 0.001), w.c, w.v,
    (w.o + w.c) / 2, 'polygon_historical', 0
FROM (
    SELECT c.*, lag(c.c, 1, c.c) OVER (PARTITION BY c.sym ORDER BY c.m) AS o
    FROM (
        SELECT r.*, 100 * exp(sum(r.r) OVER (PARTITION BY r.sym ORDER BY r.m)) AS c
        FROM (
            SELECT
                format('BACK%%s', lpad(s::text, 2, '0')) AS sym, m,
                timestamptz '2024-01-01 00:00+00' + m * interval '1 minute' AS ts,
                (random() - 0.5) * 0.002 AS r, random() AS a, random() AS u,
                1 + floor(random() * 100) AS v
            FROM generate_series(0, %(symbols)s - 1) AS s
            CROSS JOIN generate_series(0, %(minutes)s - 1) AS m
        ) AS r
    ) AS c
) AS w
"""

INDICATORS_FINISH_SQL = """
SELECT tickagg.agg_finish(
    p_canonical_symbol => %(symbol)s, p_timeframe => %(timeframe)s, p_task_kind => 'indicators',
    p_claim_token => %(claim_token)s, p_outcome => 'success',
    p_cursor_from => %(cursor_from)s::timestamptz, p_cursor_to => %(cursor_to)s::timestamptz,
    p_bars_written => %(bars_written)s, p_continue => %(continue)s)
"""


def drive(conn, kind: str) -> tuple[float, int, int]:
    """Claim and run the due tasks of one kind until none is due, as the runner
    would (10,000 buckets or bars per run); seconds, runs, bars."""
    # the tasks of the kind are due now: a task disabled while its source was
    # written was not made due by those writes
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = (task_kind = %(kind)s),"
        " next_run_at = CASE WHEN task_kind = %(kind)s THEN now() ELSE next_run_at END",
        {"kind": kind},
    )
    runs = bars = 0
    t0 = time.perf_counter()
    while (task := conn.execute(CLAIM_SQL).fetchone()) is not None:
        args = {
            "symbol": task["canonical_symbol"],
            "timeframe": task["timeframe"],
            "task_kind": task["task_kind"],
            "claim_token": task["claim_token"],
            "cursor": task["cursor_ts"],
            "max_windows": 10_000,
        }
        with conn.transaction():
            if kind == "rollup":
                res = conn.execute(CATCHUP_SQL, args).fetchone()
                res = next(iter(res.values()))
                bars += res["bars_written"]
                finish = FINISH_SQL
            else:
                res = conn.execute(
                    "SELECT tickagg.indicators_step(%s, %s, %s, 10000) AS r",
                    (args["symbol"], args["timeframe"], args["cursor"]),
                ).fetchone()["r"]
                bars += res["bars_computed"]
                finish = INDICATORS_FINISH_SQL
            conn.execute(
                finish,
                args
                | {
                    "cursor_from": res["cursor_from"],
                    "cursor_to": res["cursor_to"],
                    "bars_written": res["bars_written"],
                    "continue": res["continue"],
                },
            )
        runs += 1
    return time.perf_counter() - t0, runs, bars


def backfill(dsn: str, symbols: int, minutes: int) -> None:
    """Rollups, then indicators, over the same backfill; the ratio of the two."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for i in range(symbols):
            conn.execute("SELECT tickagg.register_symbol(%s, 'crypto_24x7')", (f"BACK{i:02d}",))
        conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (BACKFILL_START,))
        # history: a bucket closes when the next minute exists, not at now() - delay
        conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years'")
        conn.execute("SELECT setseed(0.31)")
        t = timed(lambda: conn.execute(BACKFILL_LOAD_SQL, {"symbols": symbols, "minutes": minutes}))
        conn.execute("VACUUM ANALYZE tickagg.data_bars")
        print(f"backfill: loaded {symbols} x {minutes:,} 1m bars in {t:.1f} s")
        roll_s, roll_runs, roll_bars = drive(conn, "rollup")
        conn.execute("VACUUM ANALYZE tickagg.derived_data_bars")
        ind_s, ind_runs, ind_bars = drive(conn, "indicators")
        print(
            f"backfill rollups (7 levels): {roll_bars:,} derived bars in {roll_runs} runs:"
            f" {roll_s:.1f} s, {1e6 * roll_s / roll_bars:.1f} us per bar"
        )
        print(
            f"backfill indicators (29 values): {ind_bars:,} bars in {ind_runs} runs:"
            f" {ind_s:.1f} s, {1e6 * ind_s / ind_bars:.1f} us per bar;"
            f" indicators / rollups = {ind_s / roll_s:.2f}x"
        )


def talib_pass(a: dict) -> None:
    h, lo, c, v = a["high"], a["low"], a["close"], a["volume"]
    for p in (7, 14, 21, 50, 200):
        talib.SMA(c, p)
        talib.EMA(c, p)
    talib.RSI(c, 14)
    talib.MACD(c, 12, 26, 9)
    talib.BBANDS(c, 20, 2, 2, 0)
    talib.ATR(h, lo, c, 14)
    talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    talib.CCI(h, lo, c, 20)
    talib.MFI(h, lo, c, v, 14)
    talib.OBV(c, v)
    talib.AD(h, lo, c, v)
    talib.ADX(h, lo, c, 14)
    talib.PLUS_DI(h, lo, c, 14)
    talib.MINUS_DI(h, lo, c, 14)
    # vwap of the UTC day: cumulative sums restarted at each day
    pv = np.cumsum(a["vwap"] * v)
    vv = np.cumsum(v)
    first = np.searchsorted(a["day"], a["day"], side="left")
    base_pv = np.where(first > 0, pv[first - 1], 0.0)
    base_v = np.where(first > 0, vv[first - 1], 0.0)
    (pv - base_pv) / (vv - base_v)


def run_step(conn, cursor, chunk: int) -> dict:
    with conn.transaction():
        return conn.execute(STEP, (SYMBOL, cursor, chunk)).fetchone()["r"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--minutes", type=int, default=100_000, help="1m bars per symbol (backfill)")
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--live", type=int, default=50)
    args = ap.parse_args()

    with bench_database("tickagg_bench_ind") as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
        if args.minutes > 0:
            backfill(dsn, args.symbols, args.minutes)
        if args.bars <= 0:
            return
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SELECT tickagg.register_symbol('BENCHIND', 'crypto_24x7')")
            conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
            t0 = time.perf_counter()
            with conn.transaction():
                for stmt in LOAD_SQL.split(";\n"):
                    if stmt.strip():
                        conn.execute(stmt, {"bars": args.bars})
            conn.execute("VACUUM ANALYZE tickagg.derived_data_bars")
            print(f"loaded {args.bars:,} 5m bars in {time.perf_counter() - t0:.1f} s")

            cursor = conn.execute(
                "SELECT last_agg_bar_ts_utc AS c FROM tickagg.data_agg_state"
                " WHERE canonical_symbol = %s AND timeframe = '5m' AND task_kind = 'indicators'",
                (SYMBOL,),
            ).fetchone()["c"]
            t0 = time.perf_counter()
            runs = 0
            while True:
                res = run_step(conn, cursor, args.chunk)
                runs += 1
                cursor = res["cursor_to"]
                if not res["continue"]:
                    break
            incremental = time.perf_counter() - t0
            print(
                f"indicators_step catch-up: {args.bars:,} bars in {runs} runs of {args.chunk:,}:"
                f" {incremental:.1f} s, {1e6 * incremental / args.bars:.1f} us per bar"
            )

            rows = conn.execute(
                "SELECT high, low, close, volume, vwap, (ts_utc AT TIME ZONE 'UTC')::date AS day"
                " FROM tickagg.derived_data_bars WHERE canonical_symbol = %s ORDER BY ts_utc",
                (SYMBOL,),
            ).fetchall()
            arrays = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0] if k != "day"}
            arrays["day"] = np.array([r["day"].toordinal() for r in rows])
            samples = [timed(lambda: talib_pass(arrays)) for _ in range(3)]
            base = median(samples)
            print(
                f"TA-Lib single pass over the same arrays (same set): {1000 * base:.0f} ms"
                f" (median of 3); incremental / TA-Lib = {incremental / base:.0f}x"
            )

            got = conn.execute(
                "SELECT indicators FROM tickagg.bar_indicators WHERE canonical_symbol = %s"
                " ORDER BY ts_utc DESC LIMIT 1",
                (SYMBOL,),
            ).fetchone()["indicators"]
            c = arrays["close"]
            for key, want in (
                ("ema_200", talib.EMA(c, 200)[-1]),
                ("rsi", talib.RSI(c, 14)[-1]),
                ("adx", talib.ADX(arrays["high"], arrays["low"], c, 14)[-1]),
                ("macd_histogram", talib.MACD(c, 12, 26, 9)[2][-1]),
            ):
                err = abs(got[key] - want) / abs(want)
                assert err < 1e-9, (key, got[key], want)
            print("last bar equals TA-Lib (ema_200, rsi, adx, macd_histogram)")

            live = []
            for i in range(args.live):
                conn.execute(
                    "INSERT INTO tickagg.derived_data_bars (canonical_symbol, timeframe, ts_utc,"
                    " bucket_end, open, high, low, close, volume, vwap, source_candles,"
                    " expected_candles, quality_score, is_partial)"
                    " SELECT canonical_symbol, timeframe, bucket_end,"
                    " bucket_end + interval '5 min', close, close * 1.001, close * 0.999,"
                    " close * (1 + %s), 10, close, 5, 5, 2, false"
                    " FROM tickagg.derived_data_bars WHERE canonical_symbol = %s"
                    " ORDER BY ts_utc DESC LIMIT 1",
                    ((i % 7 - 3) * 1e-4, SYMBOL),
                )
                t = time.perf_counter()
                res = run_step(conn, cursor, args.chunk)
                live.append(1000 * (time.perf_counter() - t))
                assert res["bars_computed"] == 1, res
                cursor = res["cursor_to"]
            print(
                f"live step (one new bar, resumed from its checkpoint): median"
                f" {median(live):.2f} ms of {args.live} (min {min(live):.2f}, max {max(live):.2f})"
            )


if __name__ == "__main__":
    main()
