"""Bar ingest benchmark (issue 16, "Ingest"): `tickagg ingest bars FILE` as a
process against a bare COPY of the same file into a table keyed like
tickagg.data_bars, measured in the same run.

Cases, for CSV and Parquet (each file ingested by the CLI with default options):

1. fresh: --rows 1m bars of --symbols crypto symbols into an empty data_bars;
2. re-ingest: the same file again (every row unchanged: nothing may be written);
3. corrections: a file where every 10th row of (1) has a new close and volume;
4. rejected: a file where every row is rejected (high below low).

The floor is `COPY keyed_floor FROM STDIN (FORMAT csv, HEADER)` of the CSV,
keyed (canonical_symbol, timeframe, ts_utc), fresh each time; for Parquet the
same CSV floor is used (the file's text is what COPY reads). Goals: cases 1-3
<= 1.5x, case 4 <= 2x. Also printed: the peak RSS of each CLI process
(`--rss-rows 10000000` adds a 10M-row file to show it does not grow with the
file), and after re-ingest the change numbers taken and invalidations queued
(both must be 0). Asserts nothing.

    .venv/bin/python benchmarks/bench_ingest.py [--rows N] [--symbols N] [--reps N]
        [--rss-rows N] [--formats csv,parquet]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from _benchlib import ROOT, bench_database, median, server_info  # noqa: E402

TICKAGG = str(ROOT / ".venv" / "bin" / "tickagg")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
GOALS = {"fresh": 1.5, "re-ingest": 1.5, "corrections": 1.5, "rejected": 2.0}


def write_csv(path: str, rows: int, symbols: int, variant: str) -> None:
    """rows bars, symbol-major (each symbol's minutes in order, as vendor files come).

    variant: 'fresh'; 'corrections' (every 10th row: other close and volume);
    'rejected' (every row has high below low)."""
    per = rows // symbols
    with open(path, "w") as fh:
        fh.write("canonical_symbol,ts_utc,open,high,low,close,volume\n")
        for s in range(symbols):
            sym = f"BX{s:02d}"
            base = 100.0 + s
            t0 = START.timestamp()
            for i in range(per):
                ts = dt.datetime.fromtimestamp(t0 + 60 * i, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                o = base + (i % 97) / 100
                hi, lo = o + 0.5, o - 0.5
                c = o + 0.1
                v = 1000 + i % 13
                if variant == "corrections" and i % 10 == 0:
                    c, v = o - 0.2, v + 1
                if variant == "rejected":
                    hi, lo = lo, hi
                fh.write(f"{sym},{ts},{o:.2f},{hi:.2f},{lo:.2f},{c:.2f},{v}\n")


def to_parquet(csv_path: str) -> str:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = csv_path[: -len(".csv")] + ".parquet"
    table = pacsv.read_csv(
        csv_path,
        convert_options=pacsv.ConvertOptions(
            column_types={"ts_utc": pa.timestamp("us")}, timestamp_parsers=["%Y-%m-%d %H:%M:%S"]
        ),
    )
    i = table.schema.get_field_index("ts_utc")
    table = table.set_column(i, "ts_utc", table.column(i).cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(table, out)
    return out


def bare_copy(dsn: str, csv_path: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS keyed_floor")
        c.execute(
            "CREATE TABLE keyed_floor (canonical_symbol text, timeframe text DEFAULT '1m',"
            " ts_utc timestamptz, open float8, high float8, low float8, close float8,"
            " volume float8, PRIMARY KEY (canonical_symbol, timeframe, ts_utc))"
        )
        c.execute("SET timezone = 'UTC'")
        t0 = time.perf_counter()
        with c.cursor() as cur, open(csv_path, "rb") as fh:
            with cur.copy(
                "COPY keyed_floor (canonical_symbol, ts_utc, open, high, low, close, volume)"
                " FROM STDIN (FORMAT csv, HEADER)"
            ) as cp:
                while block := fh.read(1 << 20):
                    cp.write(block)
        elapsed = time.perf_counter() - t0
        c.execute("DROP TABLE keyed_floor")
    return elapsed


def cli_ingest(dsn: str, path: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MB, exit code) of `tickagg ingest bars path`.

    The peak RSS comes from /usr/bin/time: a child forked from this process would
    report this process's RSS as its own (Linux carries it over at exec)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", TICKAGG, "--dsn", dsn, "--log-level", "WARNING",
         "ingest", "bars", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    return elapsed, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.returncode


def counters(dsn: str) -> dict:
    with psycopg.connect(dsn) as c:
        return {
            "change_no": c.execute("SELECT last_value FROM tickagg.bar_change_seq").fetchone()[0],
            "invalidations": c.execute("SELECT count(*) FROM tickagg.agg_invalidations").fetchone()[
                0
            ],
            "bars": c.execute("SELECT count(*) FROM tickagg.data_bars").fetchone()[0],
            "locked": c.execute(
                "SELECT count(*) FROM tickagg.data_bars WHERE xmax::text <> '0'"
            ).fetchone()[0],
            "n_tup_upd": c.execute(
                "SELECT n_tup_upd + n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relid = 'tickagg.data_bars'::regclass"
            ).fetchone()[0],
        }


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("TRUNCATE tickagg.data_bars, tickagg.ingest_batches CASCADE")
        c.execute("DELETE FROM tickagg.agg_invalidations")
        c.execute("VACUUM ANALYZE tickagg.data_bars")


def run(dsn: str, args) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        print(server_info(c))
        for s in range(args.symbols):
            c.execute("SELECT tickagg.register_symbol(%s, 'crypto_24x7')", (f"BX{s:02d}",))
        c.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    formats = args.formats.split(",")
    with tempfile.TemporaryDirectory(prefix="tickagg-bench-ingest-") as tmp:
        files = {}
        for variant in ("fresh", "corrections", "rejected"):
            p = os.path.join(tmp, f"{variant}.csv")
            write_csv(p, args.rows, args.symbols, variant)
            files[("csv", variant)] = p
            if "parquet" in formats:
                files[("parquet", variant)] = to_parquet(p)
        size_mb = os.path.getsize(files[("csv", "fresh")]) / 1e6
        print(f"{args.rows:,} rows, {args.symbols} symbols, {size_mb:.0f} MB CSV; "
              f"median of {args.reps}")  # fmt: skip
        print(f"{'case':<24}{'ingest s':>10}{'COPY s':>9}{'ratio':>8}{'goal':>7}"
              f"{'RSS MB':>9}{'exit':>6}", flush=True)  # fmt: skip
        for fmt in formats:
            results: dict = {}
            writes: dict = {}
            for _ in range(args.reps):
                reset(dsn)
                for case in GOALS:
                    variant = "fresh" if case in ("fresh", "re-ingest") else case
                    before = counters(dsn)
                    floor = bare_copy(dsn, files[("csv", variant)])
                    t, rss, rc = cli_ingest(dsn, files[(fmt, variant)])
                    if case == "re-ingest":
                        after = counters(dsn)
                        writes = {k: after[k] - before[k] for k in before}
                    results.setdefault(case, []).append((t, floor, rss, rc))
            for case, goal in GOALS.items():
                samples = results[case]
                ratio = median([t / f for t, f, _, _ in samples])
                print(
                    f"{fmt + ' ' + case:<24}{median([s[0] for s in samples]):>10.2f}"
                    f"{median([s[1] for s in samples]):>9.2f}{ratio:>7.2f}x{goal:>6.1f}x"
                    f"{max(s[2] for s in samples):>9.0f}{samples[-1][3]:>6}",
                    flush=True,
                )
            print(
                f"  {fmt} re-ingest wrote: {writes['change_no']} change numbers, "
                f"{writes['invalidations']} invalidations, {writes['n_tup_upd']} row updates, "
                f"{writes['locked']} rows locked or updated (xmax set)",
                flush=True,
            )
        if args.rss_rows:
            for rows in sorted({args.rows, args.rss_rows}):
                p = os.path.join(tmp, f"rss{rows}.csv")
                write_csv(p, rows, args.symbols, "fresh")
                reset(dsn)
                t, rss, rc = cli_ingest(dsn, p)
                print(f"peak RSS, fresh CSV of {rows:>11,} rows: {rss:7.0f} MB ({t:.1f} s)")
                os.remove(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--rss-rows", type=int, default=0, help="also the peak RSS on a file this big")
    ap.add_argument("--formats", default="csv,parquet")
    args = ap.parse_args()
    with bench_database("tickagg_bench_ingest") as dsn:
        run(dsn, args)


if __name__ == "__main__":
    main()
