"""`tickagg demo`: private PostgreSQL, synthetic data with gaps, bad rows and
late corrections, two runner passes, and a short report."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import click
import psycopg
from psycopg import sql

from . import db, queries, tick_sim
from .errors import TickaggDatabaseError
from .ingest import format_result, ingest_bars_file
from .ingest_ticks import ingest_ticks_file
from .loop import Runner, RunnerConfig
from .status import fmt_value
from .synthetic import DEMO_SYMBOLS, correct, generate, latest_completed_hour

DEMO_CH_DB = "tickagg_demo"

log = logging.getLogger(__name__)

DEMO_DB = "tickagg_demo"
BASE_SOURCE = "polygon_historical"
LATE_SOURCE = "live_aggregated"
CSV_HEADER = ["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume", "source"]


def _iso(ts: dt.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_rows(start: dt.datetime) -> list[list[str]]:
    t = _iso(start + dt.timedelta(days=2, hours=3))
    return [
        ["EURUSD", "2024-13-45 25:61", "1.1", "1.2", "1.0", "1.1", "10", BASE_SOURCE],
        ["EURUSD", t, "NaN", "1.2", "1.0", "1.1", "10", BASE_SOURCE],
        ["GBPUSD", t, "1.27", "1.25", "1.29", "1.27", "10", BASE_SOURCE],  # high < low
        ["USDJPY", t, "151.0", "151.5", "150.5", "151.1", "-5", BASE_SOURCE],
        ["XXXYYY", t, "1.0", "1.0", "1.0", "1.0", "1", BASE_SOURCE],  # unknown
    ]


def write_demo_files(
    workdir: str, start: dt.datetime, end: dt.datetime, seed: int
) -> tuple[str, str, dict]:
    """Main CSV (with a few bad rows) and a late CSV (held-back hours plus
    higher-ranked corrections). Returns paths and counts."""
    rng = random.Random(seed)
    span_days = (end - start).days
    # held-back hours: weekday mid-session hours in the middle of the range
    late_hours: set[tuple[str, dt.datetime]] = set()
    for sym in ("EURUSD", "GBPUSD", "BTCUSD"):
        for _ in range(2):
            while True:
                d = start + dt.timedelta(days=rng.randint(span_days // 4, span_days * 3 // 4))
                if d.weekday() in (1, 2, 3):
                    break
            late_hours.add((sym, d.replace(hour=rng.choice((9, 13, 15)), minute=0)))
    # corrections: random minutes of EURUSD and BTCUSD
    correction_ts: set[tuple[str, dt.datetime]] = set()
    span_minutes = int((end - start).total_seconds() // 60)
    for sym in ("EURUSD", "BTCUSD"):
        for _ in range(8):
            d = start + dt.timedelta(minutes=rng.randrange(span_minutes - 60))
            correction_ts.add((sym, d))
    main_path = os.path.join(workdir, "demo_bars.csv")
    late_path = os.path.join(workdir, "demo_late_bars.csv")
    counts = {"main": 0, "late_held_back": 0, "corrections": 0, "bad": 0}
    late_rows: list[list[str]] = []
    with open(main_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        for spec in DEMO_SYMBOLS:
            for bar in generate(spec, start, end, random.Random(rng.random())):
                sym, ts = bar[0], bar[1]
                row = [sym, _iso(ts), *bar[2:]]
                if (sym, ts.replace(minute=0)) in late_hours:
                    late_rows.append(row)
                    counts["late_held_back"] += 1
                    continue
                w.writerow(row)
                counts["main"] += 1
                if (sym, ts) in correction_ts:
                    c = correct(bar, rng, LATE_SOURCE)
                    late_rows.append([c[0], _iso(c[1]), *c[2:]])
                    counts["corrections"] += 1
        bad = _bad_rows(start)
        # a duplicate inside the file: BTCUSD's first minute again, other prices
        bad.append(["BTCUSD", _iso(start), "1", "1", "1", "1", "1", BASE_SOURCE])
        w.writerows(bad)
        counts["bad"] = len(bad)
    with open(late_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        w.writerows(late_rows)
    return main_path, late_path, counts


def _run_pass(dsn: str, pool, workers: int) -> dict:
    cfg = RunnerConfig(
        dsn=dsn,
        env="prod",
        workers=workers,
        lease_seconds=120,
        statement_timeout=110,
        poll_max=2,
        until_idle=True,
    )
    t0 = time.monotonic()
    stats = Runner(cfg, pool).run()
    return {
        "seconds": time.monotonic() - t0,
        "tasks": stats.tasks_succeeded,
        "failed": stats.tasks_failed,
        "bars": stats.bars_written,
    }


def _recreate_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _pct(value) -> str:
    # NULL coverage means the market was closed for the whole window
    return "  closed" if value is None else f"{value:>7.2f}%"


def _report(pool, first: dict, second: dict, ingest_counts: dict) -> None:
    echo = click.echo

    def optional(fn, *args):
        # the real-time views may not exist in every schema version
        try:
            with pool.connection() as conn:
                return fn(conn, *args)
        except TickaggDatabaseError as exc:
            if exc.sqlstate != "42P01":
                raise
            return []

    with pool.connection() as conn:
        counts = queries.bar_counts(conn)
        tasks = queries.task_status(conn)
        coverage = queries.coverage(conn)
    quality = optional(queries.quality_distribution)
    h1 = optional(queries.sample_bars, "EURUSD", "1h", 6)
    d1 = optional(queries.sample_bars, "EURUSD", "1d", 5)
    indicators = optional(queries.latest_indicators, "EURUSD", "1h")
    echo("\n== bars per timeframe ==")
    for r in counts:
        echo(
            f"  {r['timeframe']:>4}  bars={r['bars']:>7}  symbols={r['symbols']}  "
            f"partial={r['partial_bars']}  avg_quality={r['avg_quality']}"
        )
    echo("\n== rollup tasks (lag = now - cursor; 1d/1w buckets close late by nature) ==")
    by_status: dict[str, int] = {}
    per_tf: dict[str, list] = {}
    for t in tasks:
        by_status[t["status"]] = by_status.get(t["status"], 0) + 1
        if t["task_kind"] == "rollup":
            per_tf.setdefault(t["timeframe"], []).append(t)
    echo("  " + ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())))
    for tf, rows in per_tf.items():  # the view orders timeframes by rank
        lags = [r["lag"] for r in rows if r.get("lag") is not None]
        runs = sum(r.get("runs_total") or 0 for r in rows)
        echo(
            f"  {tf:>4}  tasks={len(rows)}  max_lag={fmt_value(max(lags)) if lags else '-':>10}"
            f"  runs={runs}"
        )
    scans = [t for t in tasks if t["task_kind"] != "rollup"]
    echo(f"  gap scans: {len(scans)} tasks, {sum(t.get('runs_total') or 0 for t in scans)} runs")
    failing = [t for t in tasks if t.get("last_error")]
    for t in failing[:5]:
        echo(f"  ! {t['canonical_symbol']} {t['timeframe']}: {t['last_error']}")
    echo("\n== coverage of 1m bars (open sessions only; the demo's holes are deliberate) ==")
    for c in coverage:
        flags = [
            name
            for name in ("coverage_24h_low", "coverage_7d_low", "oldest_gap_too_old")
            if c.get(name)
        ]
        echo(
            f"  {c['canonical_symbol']:<7} 24h={_pct(c['coverage_24h'])}  "
            f"7d={_pct(c['coverage_7d'])}  open_gaps={c['open_gaps'] or 0:>3}  "
            f"oldest_gap_age={fmt_value(c['oldest_gap_age'])}"
            + (f"  ! {', '.join(flags)}" if flags else "")
        )
    echo("\n== quality (2 = complete, 1 = usable, 0 = below threshold) ==")
    if not quality:
        echo("  (no ohlcv_* views in this schema)")
    for r in quality:
        echo(f"  {r['timeframe']:>4}  q2={r['q2']:>6}  q1={r['q1']:>5}  q0={r['q0']:>5}")
    for title, rows in (("EURUSD 1h (latest)", h1), ("EURUSD 1d (latest)", d1)):
        echo(f"\n== {title} ==")
        if not rows:
            echo("  (no ohlcv_* views in this schema)")
        for b in rows:
            echo(
                f"  {b['bucket']:%Y-%m-%d %H:%M}Z  O={b['open']} H={b['high']} "
                f"L={b['low']} C={b['close']} V={b['volume']} "
                f"src={b['source_candles']}/{b['expected_candles']} q={b['quality_score']}"
            )
    for r in indicators:
        echo(f"\n== EURUSD 1h indicators of the bar {r['ts_utc']:%Y-%m-%d %H:%M}Z ==")
        values = r["indicators"]
        echo(
            "  "
            + "  ".join(
                f"{name}={'-' if values.get(name) is None else f'{values[name]:.5g}'}"
                for name in DEMO_INDICATORS
            )
        )
    echo("\n== runs ==")
    echo(
        f"  first pass:  {first['tasks']} task runs, {first['bars']} bars, {first['seconds']:.1f}s"
    )
    echo(
        f"  late batch:  {ingest_counts['late_held_back']} held-back 1m bars + "
        f"{ingest_counts['corrections']} corrections by {LATE_SOURCE}"
    )
    echo(
        f"  second pass: {second['tasks']} task runs re-materialised "
        f"{second['bars']} derived bars in {second['seconds']:.1f}s"
    )


# a few of the indicators on every derived bar, printed for the newest EURUSD 1h bar
DEMO_INDICATORS = ("sma_21", "ema_21", "ema_200", "rsi", "macd_histogram", "bb_width", "atr",
                   "stoch_k", "adx", "vwap")  # fmt: skip


# tick-fed instruments: a crypto pair with trades (last, size) and a forex pair
# with quotes only (priced by mid)
TICK_SYMBOLS = (
    ("SOLUSD", "crypto_24x7", "last", 150.0, 90),
    ("AUDUSD", "forex_24x5", "mid", 0.65, 120),
)
TICK_HISTORY_MINUTES = 15
TICK_LIVE_MINUTES = 16
TICK_LIVE_SPEED = 320.0


def _write_tick_history(path: str, sims, start: dt.datetime, minutes: int, seed: int) -> int:
    """Ticks of the first minutes as a file for `ingest ticks`, with two bad ticks."""
    rng = random.Random(seed)
    rows = [
        t
        for s in sims
        for m in range(minutes)
        for t in tick_sim.ticks_between(
            rng, s, start + m * tick_sim.MINUTE, start + (m + 1) * tick_sim.MINUTE
        )
    ]
    rows.sort(key=lambda t: t[1])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["canonical_symbol", "ts_utc", "bid", "ask", "last", "size"])
        for sym, ts, bid, ask, last, size in rows:
            w.writerow([sym, ts.isoformat(), bid, ask, last, size])
        w.writerow(["AUDUSD", (start + dt.timedelta(minutes=3)).isoformat(), 0.66, 0.65, "", ""])
        w.writerow(["XRPUSD", (start + dt.timedelta(minutes=4)).isoformat(), "", "", 0.5, 10])
    return len(rows)


def _ticks_step(dsn: str, pool, workers: int, seed: int) -> None:
    """Tick-fed instruments: a file of recent ticks through `ingest ticks`, then a
    live simulator streaming ticks while a runner runs, then a late tick."""
    echo = click.echo
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    start = now - dt.timedelta(minutes=TICK_HISTORY_MINUTES + TICK_LIVE_MINUTES + 2)
    sims = [
        tick_sim.SimSymbol(sym, kind, price, rate) for sym, _, kind, price, rate in TICK_SYMBOLS
    ]
    with pool.connection() as conn, conn.transaction():
        for sym, cal, kind, _, _ in TICK_SYMBOLS:
            queries.register_symbol(conn, sym, cal, source_kind="ticks", price_kind=kind)
        queries.sync_agg_state_from_registry(conn, "prod", start)
        # the replay is of past minutes, which the clock has closed already: let
        # only the data close them (a tick of a later minute), as live would
        default_delay = queries.setting(conn, "ticks_1m_delay")
        for sym, *_ in TICK_SYMBOLS:
            queries.agg_task_set_delay(conn, sym, "100 years", "ticks_1m")
    echo(f"\n== ticks: {', '.join(s for s, *_ in TICK_SYMBOLS)} (tick-fed) ==")
    with tempfile.TemporaryDirectory(prefix="tickagg-demo-ticks-") as tmp:
        path = os.path.join(tmp, "demo_ticks.csv")
        n = _write_tick_history(path, sims, start, TICK_HISTORY_MINUTES, seed)
        res = ingest_ticks_file(pool, path)
        echo(f"ingest ticks ({n} ticks of {TICK_HISTORY_MINUTES} minutes + 2 bad): "
             + format_result(res, "tickagg.tick_rejects_recent"), nl=False)  # fmt: skip

    cfg = RunnerConfig(dsn=dsn, env="prod", workers=workers, lease_seconds=120,
                       statement_timeout=110, poll_max=2)  # fmt: skip
    runner = Runner(cfg, pool)
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False})
    thread.start()
    try:
        live_start = start + dt.timedelta(minutes=TICK_HISTORY_MINUTES)
        closes, sent = tick_sim.replay(
            dsn, sims, live_start, TICK_LIVE_MINUTES, TICK_LIVE_SPEED, seed=seed
        )
        # a late tick for a minute already aggregated: rebuilt as live_gap_filled
        with pool.connection() as conn:
            queries.ingest_ticks(
                conn, [("SOLUSD", live_start + dt.timedelta(minutes=2, seconds=30), None, None,
                        151.0, 5.0)],
            )  # fmt: skip
        time.sleep(1.0)
    finally:
        runner.request_stop("demo ticks done")
        thread.join()
    with pool.connection() as conn:
        for sym, *_ in TICK_SYMBOLS:
            queries.agg_task_set_delay(conn, sym, default_delay, "ticks_1m")
        lat = tick_sim.close_latencies(conn, closes)
        summary = queries.tick_bar_summary(conn, [s for s, *_ in TICK_SYMBOLS])
        storage = queries.ticks_storage(conn)
    echo(f"live simulator: {TICK_LIVE_MINUTES} minutes replayed at {TICK_LIVE_SPEED:g}x,"
         f" {sent} ticks through tickagg.ingest_ticks, {len(closes)} minute closes")  # fmt: skip
    for tf in ("1m", "5m"):
        v = lat[tf]
        if v:
            p50, p99 = tick_sim.percentile(v, 50), tick_sim.percentile(v, 99)
            echo(f"  minute close -> {tf} bar committed: p50 {p50 * 1000:.0f} ms,"
                 f" p99 {p99 * 1000:.0f} ms (n={len(v)})")  # fmt: skip
    for r in summary:
        echo(f"  {r['canonical_symbol']:<9} 1m bars={r['bars']:>3}  source={r['source']:<16}"
             f" volume={r['volume_kind']}")  # fmt: skip
    if storage:
        echo(f"  storage: {storage['partitions']} daily partitions of ticks,"
             f" retention {storage['retention']}")  # fmt: skip


def _chart_step(pool, data_dir: str) -> None:
    """Draw the newest EURUSD 1h bars (what `tickagg chart` does) next to the
    demo cluster and print the file's path."""
    from . import chart, read

    path = Path(os.path.dirname(data_dir)) / "EURUSD_1h.html"
    names = ["sma_21", "bb_upper", "bb_lower", "rsi"]
    end = dt.datetime.now(dt.UTC)
    with pool.connection() as conn:
        batches = read.iter_bars(
            conn, ["EURUSD"], "1h", chart.default_start("1h", end), end, names, True
        )
        rows = [r for batch in batches for r in batch]
    try:
        chart.render(rows, names, "EURUSD 1h", path)
    except chart.ChartUnavailable as exc:
        click.echo(f"\nno chart: {exc}")
        return
    click.echo(f"\nchart of EURUSD 1h ({len(rows)} bars): {path}")


def _clickhouse_step(pool, data_dir: str) -> None:
    """Export everything to the embedded ClickHouse next to the demo cluster
    (<data-dir>/../clickhouse, recreated each run) and print the verify summary."""
    from . import clickhouse

    path = os.path.join(os.path.dirname(data_dir), "clickhouse")
    url = f"chdb://{path}"
    t0 = time.monotonic()
    clickhouse.connect(url, "default").command(f"DROP DATABASE IF EXISTS {DEMO_CH_DB}")
    ch = clickhouse.connect(url, DEMO_CH_DB)
    clickhouse.migrate(ch)
    with pool.connection() as conn, conn.transaction():
        queries.sync_export_tasks(conn, "prod")
        symbols = queries.export_symbols(conn)
    rows = sum(clickhouse.export_once(pool, ch, s, 50000)["rows"] for s in symbols)
    with pool.connection() as conn:
        drift = [d for s in symbols for d in clickhouse.verify_symbol(conn, ch, s)]
    click.echo(
        f"\nClickHouse (embedded, {path}): exported {rows} bars in"
        f" {time.monotonic() - t0:.1f}s; verify: {len(symbols)} symbols,"
        f" {len(drift)} day(s) with drift"
    )
    by_source = ch.query(
        "SELECT source, count(), min(version), max(version) FROM aggregates FINAL"
        " GROUP BY source ORDER BY min(version)"
    ).result_rows
    for src, n, lo, hi in by_source:
        click.echo(f"  {src:<24} {n:>9} bars  version {lo} .. {hi}")


def fallback_data_dir(data_dir: str) -> str:
    """Where the demo's cluster goes when the postgres OS user cannot reach data_dir
    (root under /root): under the temp dir, named after data_dir, so demos run
    from different places (two clones, CI beside a developer) never share it."""
    tag = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"tickagg-demo-{os.getuid()}-{tag}", "pg")


def run_demo(
    data_dir: str,
    weeks: int = 4,
    keep_running: bool = False,
    workers: int = 2,
    seed: int = 42,
    with_clickhouse: bool = True,
) -> None:
    from .embedded_pg import EmbeddedPostgres
    from .migrate import migrate

    t_start = time.monotonic()
    if logging.getLogger().level >= logging.INFO:
        # one line per task is right for `run`, too much for the demo
        for name in ("runner.loop", "runner.ingest", "runner.ingest_ticks"):
            logging.getLogger(name).setLevel(logging.WARNING)
    data_dir = os.path.abspath(data_dir)
    os.makedirs(os.path.dirname(data_dir) or ".", exist_ok=True)
    pg = EmbeddedPostgres(data_dir)
    click.echo(f"starting PostgreSQL in {data_dir} ...")
    try:
        pg.start()
    except PermissionError as exc:
        # as root under /root the postgres OS user cannot reach cwd; use /tmp
        fallback = fallback_data_dir(data_dir)
        click.echo(f"{exc}; using {fallback} instead", err=True)
        os.makedirs(os.path.dirname(fallback), exist_ok=True)
        os.chmod(os.path.dirname(fallback), 0o755)  # noqa: S103 - postgres must traverse
        pg = EmbeddedPostgres(fallback)
        pg.start()
    pool = None
    try:
        _recreate_database(pg.dsn("postgres"), DEMO_DB)
        dsn = pg.dsn(DEMO_DB)
        migrate(dsn)
        pool = db.make_pool(dsn, max_size=workers + 1)

        end = latest_completed_hour()
        start = (end - dt.timedelta(weeks=weeks)).replace(hour=0)
        with pool.connection() as conn, conn.transaction():
            for spec in DEMO_SYMBOLS:
                queries.register_symbol(
                    conn,
                    spec.symbol,
                    spec.calendar,
                    asset_class=spec.asset_class,
                    is_mandatory=spec.mandatory,
                )
            synced = queries.sync_agg_state_from_registry(conn, "prod", start)
        click.echo(f"registered {len(DEMO_SYMBOLS)} symbols; tasks: {synced}")

        with tempfile.TemporaryDirectory(prefix="tickagg-demo-") as tmp:
            main_csv, late_csv, counts = write_demo_files(tmp, start, end, seed)
            click.echo(
                f"generated {counts['main']} 1m bars {start:%Y-%m-%d} .. "
                f"{end:%Y-%m-%d %H:%M}Z (+{counts['bad']} bad rows)"
            )
            res = ingest_bars_file(pool, main_csv, BASE_SOURCE)
            click.echo(format_result(res), nl=False)
            first = _run_pass(dsn, pool, workers)
            click.echo(f"first pass done: {first['tasks']} task runs, {first['bars']} bars")
            res = ingest_bars_file(pool, late_csv, LATE_SOURCE)
            click.echo("late batch: " + format_result(res), nl=False)
            second = _run_pass(dsn, pool, workers)
        _report(pool, first, second, counts)
        _ticks_step(dsn, pool, workers, seed)
        _chart_step(pool, data_dir)
        if with_clickhouse:
            _clickhouse_step(pool, data_dir)
        click.echo(f"\ndemo finished in {time.monotonic() - t_start:.0f}s")
        if keep_running:
            click.echo(
                f"cluster left running; connect with:\n  "
                f"psql '{db.mask_dsn(dsn)}'\n  TICKAGG_DSN='{db.mask_dsn(dsn)}' "
                f"tickagg status"
            )
    finally:
        if pool is not None:
            pool.close()
        if not keep_running:
            pg.stop()
