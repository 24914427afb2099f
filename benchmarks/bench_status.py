"""A market's worth of tasks: `sync`, `status` and `status --json` as the user runs them.

Issue 18's scale bar: with 2,000 symbols registered (16 tasks each: rollups,
indicators, gap scans), `tickagg sync` under 10 s and `tickagg status` (table and
--json) under 1 s, each timed as a process with default options, beside the
process start-up of `tickagg --help` (the floor: Python and the imports). Asserts
nothing.

    .venv/bin/python benchmarks/bench_status.py [--symbols 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, median, server_info  # noqa: E402

TICKAGG = ROOT / ".venv" / "bin" / "tickagg"

REGISTER = """
INSERT INTO tickagg.core_asset_registry_all (canonical_symbol, calendar_code)
SELECT 'S' || lpad(i::text, 5, '0'), 'crypto_24x7' FROM generate_series(1, %(n)s) AS i
"""


def timed_command(dsn: str, *args: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(TICKAGG), "--dsn", dsn, *args], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"tickagg {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, len(done.stdout.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with bench_database("status") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            print(server_info(conn))
            conn.execute(REGISTER, {"n": args.symbols})
        first_sync, _ = timed_command(dsn, "sync", "--start", "2026-01-01T00:00:00Z")
        with psycopg.connect(dsn, autocommit=True) as conn:
            tasks = conn.execute("SELECT count(*) FROM tickagg.data_agg_state").fetchone()[0]
            conn.execute("ANALYZE")
        print(f"{args.symbols} symbols, {tasks} tasks")
        floor = median([timed_command(dsn, "--help")[0] for _ in range(args.repeat)])
        rows = [
            ("--help (start-up floor)", floor, 0, ""),
            ("sync (first, creates tasks)", first_sync, 0, "< 10 s"),
        ]
        for cmd, goal in (
            (("sync",), "< 10 s"),
            (("status",), "< 1 s"),
            (("status", "--json"), "< 1 s"),
        ):
            runs = [timed_command(dsn, *cmd) for _ in range(args.repeat)]
            rows.append((" ".join(cmd), median([r[0] for r in runs]), runs[0][1], goal))
        print(f"{'command':<28}{'median s':>10}{'vs --help':>11}{'lines':>8}  goal")
        for name, secs, lines, goal in rows:
            print(f"{name:<28}{secs:>10.2f}{secs / floor:>10.1f}x{lines:>8}  {goal}")


if __name__ == "__main__":
    main()
