"""Gap benchmark: agg_find_gaps over ten years of 1-minute forex bars.

One symbol on forex_24x5, 2015-01-04 .. 2025-01-03 (~3.7M bars) with 1,000
random holes of 1-120 minutes, loaded with one INSERT ... SELECT generate_series.
Measures agg_find_gaps('1m') over the whole range before the rollups exist
(every bar is read) and after the runner has materialised 5m..1w (complete
derived bars prove their minutes present; goal under 100 ms, against the 5 s of
seeds/003 item 11), then the gap_scan task kinds (live and historical) as the
runner calls them. Prints medians; asserts nothing but that both paths agree.

    .venv/bin/python benchmarks/bench_gaps.py [--reps N] [--holes N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, median, server_info, timed  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

sys.path.insert(0, str(ROOT))
from runner.loop import RunnerConfig  # noqa: E402
from runner.loop import run as run_loop  # noqa: E402

SYMBOL = "BENCHFX"
FROM, TO = "2015-01-01 00:00+00", "2025-01-05 00:00+00"
GOAL_MS = 100.0

LOAD_SQL = """
SELECT setseed(0.42);
CREATE TEMP TABLE hole_minutes AS
SELECT DISTINCT h.hole_start + make_interval(mins => i) AS ts
FROM (
    SELECT timestamptz '2015-01-05 00:00+00'
        + make_interval(mins => floor(random() * 5250000)::integer) AS hole_start,
        1 + floor(random() * random() * 120)::integer AS len
    FROM generate_series(1, %(holes)s)
) AS h
CROSS JOIN LATERAL generate_series(0, h.len - 1) AS i;
INSERT INTO tickagg.data_bars (
    canonical_symbol, ts_utc, open, high, low, close, volume, source, source_rank
)
SELECT 'BENCHFX', m, 1.1, 1.2, 1.0, 1.1, 1, 'polygon_historical', 0
FROM generate_series(
    timestamptz '2015-01-04 00:00+00', timestamptz '2025-01-03 23:59+00', interval '1 minute'
) AS m
CROSS JOIN LATERAL (SELECT (m AT TIME ZONE 'America/New_York') AS l) AS x
WHERE
    (
        extract(ISODOW FROM x.l) BETWEEN 1 AND 4
        OR (extract(ISODOW FROM x.l) = 7 AND extract(HOUR FROM x.l) >= 17)
        OR (extract(ISODOW FROM x.l) = 5 AND extract(HOUR FROM x.l) < 17)
    )
    AND m NOT IN (SELECT ts FROM hole_minutes);
"""

FIND = (
    "SELECT count(*) AS gaps, coalesce(sum(missing_candles), 0) AS missing"
    " FROM tickagg.agg_find_gaps('BENCHFX', '1m', %(from)s, %(to)s)"
)


def find(conn) -> dict:
    return conn.execute(FIND, {"from": FROM, "to": TO}).fetchone()


def timed_ms(fn, reps: int) -> list[float]:
    return [1000 * timed(fn) for _ in range(reps)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--holes", type=int, default=1000)
    args = ap.parse_args()

    with bench_database("tickagg_bench_gaps") as dsn:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            print(server_info(conn))
            conn.execute("SELECT tickagg.register_symbol('BENCHFX', 'forex_24x5')")
            t0 = time.perf_counter()
            with conn.transaction():
                for stmt in LOAD_SQL.split(";\n"):
                    if stmt.strip():
                        conn.execute(stmt, {"holes": args.holes})
            conn.execute("VACUUM ANALYZE tickagg.data_bars")
            n = conn.execute("SELECT count(*) AS n FROM tickagg.data_bars").fetchone()["n"]
            secs = time.perf_counter() - t0
            print(f"loaded {n:,} 1m bars with {args.holes} holes in {secs:.1f} s")

            raw = find(conn)
            slow = timed_ms(lambda: find(conn), 3)
            print(
                f"agg_find_gaps 1m, 10 years, no derived bars (reads every bar): "
                f"median {median(slow):.0f} ms; {raw['gaps']} gaps, {raw['missing']} minutes"
            )

            conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2015-01-01')")
            # gap scans run separately below
            conn.execute(
                "UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind <> 'rollup'"
            )
            t0 = time.perf_counter()
            run_loop(
                RunnerConfig(dsn=dsn, workers=2, until_idle=True, statement_timeout=600,
                             lease_seconds=900),
                install_signals=False,
            )  # fmt: skip
            print(f"catch-up 5m..1w by the runner: {time.perf_counter() - t0:.1f} s")
            conn.execute("VACUUM ANALYZE tickagg.derived_data_bars")

            fast = find(conn)
            assert fast == raw, (fast, raw)
            samples = timed_ms(lambda: find(conn), args.reps)
            verdict = "OK" if median(samples) < GOAL_MS else "MISSED"
            print(
                f"agg_find_gaps 1m, 10 years, derived bars materialised: median "
                f"{median(samples):.1f} ms of {args.reps} (min {min(samples):.1f}, max "
                f"{max(samples):.1f}); goal < {GOAL_MS:.0f} ms: {verdict}; 5 s in seeds/003 "
                f"= {5000 / median(samples):.0f}x faster"
            )

            for scope in ("history", "live"):
                first = timed_ms(
                    lambda s=scope: conn.execute(
                        "SELECT tickagg.gap_scan_run('BENCHFX', %s)", (s,)
                    ),
                    1,
                )[0]
                again = timed_ms(
                    lambda s=scope: conn.execute(
                        "SELECT tickagg.gap_scan_run('BENCHFX', %s)", (s,)
                    ),
                    args.reps,
                )
                print(
                    f"gap_scan_run {scope}: first run (empty ledger) {first:.1f} ms, "
                    f"rescans median {median(again):.1f} ms"
                )
            led = conn.execute(
                "SELECT count(*) AS n, sum(missing_minutes) AS m FROM tickagg.gaps_open"
            ).fetchone()
            print(f"ledger: {led['n']} open gaps, {led['m']} missing minutes (to today)")


if __name__ == "__main__":
    main()
