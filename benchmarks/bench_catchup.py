"""Catch-up benchmark: materialise derived bars from ~1M one-minute bars.

Compares, in one process on the same data, the engine (claim -> catchup ->
agg_finish, the SQL the runner's agg_run_rollup calls, as separate calls) against a bare
INSERT ... SELECT ... GROUP BY into a plain table. Goals (docs: DESIGN.md,
"Performance bars"): 5m within 1.3x of the baseline, all seven timeframes
within 2.0x. Prints ratios; asserts nothing.

    .venv/bin/python benchmarks/bench_catchup.py [--reps N] [--weeks W] [--no-explain]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import (  # noqa: E402
    BASELINE_SQL,
    BASELINE_TABLE_SQL,
    bench_database,
    captured_plans,
    print_plan,
    server_info,
    timed,
)
from psycopg.rows import dict_row  # noqa: E402

SYMBOLS = [f"BENCH{i:02d}" for i in range(10)]
LEVELS = ["5m", "15m", "30m", "1h", "4h", "1d", "1w"]
# Sunday 2024-01-07 17:00 New York opens the first forex week. A forex week never
# contains a DST switch (those happen at 02:00 on a Sunday), so minute m of a week
# is simply week_open + m minutes.
FIRST_WEEK = "2024-01-07"
AGG_START = "2024-01-01 00:00:00+00"
MINUTES_PER_WEEK = 5 * 24 * 60
GOAL_5M = 1.3
GOAL_ALL = 2.0

LOAD_SQL = """
INSERT INTO tickagg.data_bars (
    canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, source, source_rank
)
SELECT
    p.sym, '1m', p.ts, p.o, greatest(p.o, p.c) + p.up, least(p.o, p.c) - p.down, p.c, p.vol,
    (greatest(p.o, p.c) + p.up + least(p.o, p.c) - p.down + p.c) / 3,
    'polygon_historical', 0
FROM (
    SELECT
        g.sym, g.ts,
        g.mid + (random() - 0.5) * 0.0004 AS o,
        g.mid + (random() - 0.5) * 0.0004 AS c,
        random() * 0.0002 AS up,
        random() * 0.0002 AS down,
        1 + floor(random() * 100) AS vol
    FROM (
        SELECT
            s.sym,
            w.week_open + m.m * interval '1 minute' AS ts,
            1.0 + 0.1 * s.n + 0.01 * sin((w.w * %(mpw)s + m.m) / 700.0) AS mid,
            s.n, w.w, m.m
        FROM generate_series(0, %(symbols)s - 1) AS s0 (n)
        CROSS JOIN LATERAL (SELECT s0.n, format('BENCH%%s', lpad(s0.n::text, 2, '0')) AS sym) AS s
        CROSS JOIN LATERAL (
            SELECT
                w0.w,
                ((%(first_week)s::date + 7 * w0.w) + time '17:00') AT TIME ZONE 'America/New_York'
                    AS week_open
            FROM generate_series(0, %(weeks)s - 1) AS w0 (w)
        ) AS w
        CROSS JOIN generate_series(0, %(mpw)s - 1) AS m (m)
    ) AS g
    WHERE
        -- single missing minutes (~0.2%%) ...
        abs(hashtextextended(g.sym || '/' || g.w || '/' || g.m, 3)) %% 500 <> 0
        -- ... and three holes of 1..120 minutes per symbol and week
        AND NOT EXISTS (
            SELECT 1
            FROM generate_series(1, 3) AS k (k)
            CROSS JOIN LATERAL (
                SELECT abs(hashtextextended(g.sym || '/' || g.w || '/' || k.k, 1)) %% %(mpw)s AS h0,
                       1 + abs(hashtextextended(g.sym || '/' || g.w || '/' || k.k, 2)) %% 120 AS len
            ) AS h
            WHERE g.m >= h.h0 AND g.m < h.h0 + h.len
        )
    OFFSET 0
) AS p
"""

BASELINE_COUNT_SQL = "SELECT count(*) AS n FROM public.bench_5m"

CLAIM_SQL = """
SELECT canonical_symbol, timeframe, task_kind, cursor_ts, claim_token
FROM tickagg.agg_get_due_tasks(p_env => 'prod', p_limit => 1, p_lease_seconds => 600)
"""

CATCHUP_SQL = """
SELECT tickagg.catchup_aggregation_range(
    p_canonical_symbol => %(symbol)s, p_timeframe => %(timeframe)s,
    p_cursor => %(cursor)s, p_max_windows => %(max_windows)s)
"""

FINISH_SQL = """
SELECT tickagg.agg_finish(
    p_canonical_symbol => %(symbol)s, p_timeframe => %(timeframe)s, p_task_kind => %(task_kind)s,
    p_claim_token => %(claim_token)s, p_outcome => 'success',
    p_cursor_from => %(cursor_from)s::timestamptz, p_cursor_to => %(cursor_to)s::timestamptz,
    p_bars_written => %(bars_written)s, p_continue => %(continue)s)
"""


def setup(conn: psycopg.Connection, weeks: int) -> int:
    for sym in SYMBOLS:
        conn.execute(
            "SELECT tickagg.register_symbol(p_canonical_symbol => %s, p_calendar_code => %s)",
            (sym, "forex_24x5"),
        )
    conn.execute(
        "SELECT tickagg.sync_agg_state_from_registry(p_env => 'prod', p_start => %s)",
        (AGG_START,),
    )
    # The data is history: close buckets at the last bar, not at now() - delay
    # (which would make 5m sweep empty sessions up to today).
    conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years'")
    conn.execute("SELECT setseed(0.4242)")
    t = timed(
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
    rows = conn.execute("SELECT count(*) AS n FROM tickagg.data_bars").fetchone()["n"]
    conn.execute("VACUUM ANALYZE tickagg.data_bars")
    inv = conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"]
    # Kept so every repetition starts with exactly what the load left behind.
    conn.execute(
        "CREATE TABLE public.bench_load_invalidations AS "
        "SELECT canonical_symbol, timeframe, dirty_range FROM tickagg.agg_invalidations"
    )
    print(f"loaded {rows:,} 1m bars in {t:.1f}s ({inv} invalidation rows from the load)")
    return rows


def reset(conn: psycopg.Connection, *, load_invalidations: bool) -> None:
    conn.execute("TRUNCATE tickagg.derived_data_bars, tickagg.agg_invalidations")
    conn.execute(
        """
        UPDATE tickagg.data_agg_state SET
            last_agg_bar_ts_utc
                = tickagg.agg_bootstrap_cursor(canonical_symbol, timeframe, agg_start_utc),
            status = 'idle', claim_token = NULL, lease_expires_at = NULL,
            running_started_at_utc = NULL, hard_fail_streak = 0, transient_fail_streak = 0,
            next_run_at = now() - interval '1 second', enabled = false
        """
    )
    if load_invalidations:
        conn.execute(
            "INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range) "
            "SELECT canonical_symbol, timeframe, dirty_range FROM public.bench_load_invalidations"
        )
    conn.execute("VACUUM ANALYZE tickagg.data_agg_state, tickagg.agg_invalidations")
    conn.execute("VACUUM tickagg.derived_data_bars")
    conn.execute("CHECKPOINT")


def run_level(conn: psycopg.Connection, timeframe: str, max_windows: int) -> tuple[float, dict]:
    """Claim/catch up/finish every task of one timeframe until none is due; seconds, counts."""
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = (timeframe = %s AND task_kind = 'rollup')",
        (timeframe,),
    )
    stats = {"runs": 0, "bars": 0}
    t0 = time.perf_counter()
    while True:
        task = conn.execute(CLAIM_SQL).fetchone()
        if task is None:
            break
        if task["timeframe"] != timeframe:
            raise RuntimeError(f"claimed {task} while running {timeframe}")
        with conn.transaction():
            res = conn.execute(
                CATCHUP_SQL,
                {
                    "symbol": task["canonical_symbol"],
                    "timeframe": task["timeframe"],
                    "cursor": task["cursor_ts"],
                    "max_windows": max_windows,
                },
            ).fetchone()
            res = next(iter(res.values()))
            conn.execute(
                FINISH_SQL,
                {
                    "symbol": task["canonical_symbol"],
                    "timeframe": task["timeframe"],
                    "task_kind": task["task_kind"],
                    "claim_token": task["claim_token"],
                    "cursor_from": res["cursor_from"],
                    "cursor_to": res["cursor_to"],
                    "bars_written": res["bars_written"],
                    "continue": res["continue"],
                },
            )
        stats["runs"] += 1
        stats["bars"] += res["bars_written"]
    return time.perf_counter() - t0, stats


def run_baseline(conn: psycopg.Connection) -> float:
    conn.execute("TRUNCATE public.bench_5m")
    conn.execute("CHECKPOINT")
    return timed(lambda: conn.execute(BASELINE_SQL.format(where="")))


def _plan_ms(plan: str) -> float:
    return float(plan.split()[1])  # "duration: 12.345 ms  plan: ..."


def _query_head(plan: str) -> str:
    lines = plan.splitlines()
    return " ".join(" ".join(lines[1:4]).split())[len("Query Text: ") :]


def _plan_body(plan: str) -> str:
    """The plan tree without the (long) query text auto_explain puts first."""
    lines = plan.splitlines()
    for i, line in enumerate(lines[2:], start=2):
        if line[:1].isalpha() and "(cost=" in line:
            return "\n".join([lines[0], "Query Text: " + _query_head(plan)[:100], *lines[i:]])
    return plan


def _show_plans(plans: list[str], title: str) -> None:
    # Plans arrive as statements end (innermost first). Row-level foreign-key
    # checks are summarised; every other statement is listed.
    fk_checks = [p for p in plans if "FOR KEY SHARE" in p.splitlines()[1]]
    others = [p for p in plans if p not in fk_checks]
    print(f"\n== {title}: {len(plans)} statements (auto_explain, ANALYZE, BUFFERS)")
    print("   (auto_explain instruments every statement; times here exceed the timed runs)")
    for p in others:
        print(f"  {_plan_ms(p):9.2f} ms  {_query_head(p)[:100]}")
    if fk_checks:
        fk_ms = sum(_plan_ms(p) for p in fk_checks)
        print(f"  {fk_ms:9.2f} ms  {len(fk_checks)} foreign-key checks (RI trigger queries)")
    for p in sorted(others, key=_plan_ms, reverse=True)[:1]:
        print_plan(f"slowest statement, {_plan_ms(p):.1f} ms", _plan_body(p))


def explain(conn: psycopg.Connection, max_windows: int) -> None:
    """Plans of one symbol's real catch-up calls (5m from 1m, then 15m from 5m) and the
    baseline's plan for the same symbol; everything is rolled back."""
    sym = SYMBOLS[1]
    reset(conn, load_invalidations=False)
    with conn.transaction(force_rollback=True):
        for tf in ("5m", "15m"):
            cursor = conn.execute(
                "SELECT last_agg_bar_ts_utc AS c FROM tickagg.data_agg_state "
                "WHERE canonical_symbol = %s AND timeframe = %s AND task_kind = 'rollup'",
                (sym, tf),
            ).fetchone()["c"]
            with captured_plans(conn) as plans:
                res = conn.execute(
                    "SELECT tickagg.catchup_aggregation_range(%s, %s, %s, %s) AS r",
                    (sym, tf, cursor, max_windows),
                ).fetchone()["r"]
            conn.execute(
                "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = %s::timestamptz "
                "WHERE canonical_symbol = %s AND timeframe = %s AND task_kind = 'rollup'",
                (res["cursor_to"], sym, tf),
            )
            _show_plans(
                plans,
                f"catchup_aggregation_range({sym}, {tf}): {res['bars_written']:,} bars",
            )
    with conn.transaction(force_rollback=True):
        conn.execute("TRUNCATE public.bench_5m")
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) "
            + BASELINE_SQL.format(where=" AND b.canonical_symbol = %(sym)s"),
            {"sym": sym},
        ).fetchall()
        print_plan(f"baseline for {sym} alone", "\n".join(r["QUERY PLAN"] for r in rows))


def report(rows, baseline, base_rows, per_level, counts, bare_5m) -> None:
    b = min(baseline)
    t5 = min(per_level["5m"])
    tall = min(sum(rep) for rep in zip(*per_level.values(), strict=True))
    reps = len(baseline)

    def verdict(ratio: float, goal: float) -> str:
        return f"<= {goal}: {'met' if ratio <= goal else 'MISSED'}"

    def runs(xs: list[float]) -> str:
        return ", ".join(f"{x:.3f}" for x in xs)

    print(f"\nbest of {reps}; baseline = bare INSERT ... SELECT ... GROUP BY into a 5m table")
    print(
        f"{'1m rows':>10} {'baseline s':>11} {'5m s':>7} {'5m ratio':>9} "
        f"{'all s':>7} {'all ratio':>10}"
    )
    print(f"{rows:>10,} {b:>11.3f} {t5:>7.3f} {t5 / b:>9.2f} {tall:>7.3f} {tall / b:>10.2f}")
    print(
        f"goals: 5m ratio {verdict(t5 / b, GOAL_5M)}; "
        f"all-levels ratio {verdict(tall / b, GOAL_ALL)}"
    )
    print(f"baseline: {base_rows:,} rows; runs {runs(baseline)}")
    print(f"\n{'level':>6} {'best s':>8} {'runs':>5} {'bars':>9}   all repetitions")
    for tf, secs in per_level.items():
        c = counts[tf]
        print(f"{tf:>6} {min(secs):>8.3f} {c['runs']:>5} {c['bars']:>9,}   {runs(secs)}")
    print(
        f"\n5m starting with the load's invalidation rows: {t5:.3f}s; "
        f"with none: {min(bare_5m):.3f}s ({runs(bare_5m)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--weeks", type=int, default=14, help="forex weeks per symbol (14 ~ 1M bars)")
    ap.add_argument("--max-windows", type=int, default=100000)
    ap.add_argument("--no-explain", action="store_true")
    args = ap.parse_args()

    with bench_database("tickagg_bench_catchup") as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            conn.execute(BASELINE_TABLE_SQL)
            rows = setup(conn, args.weeks)

            # Baseline and engine take turns, so a busy spell on the machine hits
            # both rather than skewing the ratio.
            baseline: list[float] = []
            per_level: dict[str, list[float]] = {tf: [] for tf in LEVELS}
            counts: dict[str, dict] = {}
            for _ in range(args.reps):
                baseline.append(run_baseline(conn))
                base_rows = conn.execute(BASELINE_COUNT_SQL).fetchone()["n"]
                conn.execute("TRUNCATE public.bench_5m")
                reset(conn, load_invalidations=True)
                for tf in LEVELS:
                    secs, counts[tf] = run_level(conn, tf, args.max_windows)
                    per_level[tf].append(secs)

            bare_5m = []
            for _ in range(args.reps):
                reset(conn, load_invalidations=False)
                bare_5m.append(run_level(conn, "5m", args.max_windows)[0])

            report(rows, baseline, base_rows, per_level, counts, bare_5m)
            if not args.no_explain:
                explain(conn, args.max_windows)


if __name__ == "__main__":
    main()
