"""`tickagg` command line (click). Every option can also come from a
TICKAGG_* environment variable (TICKAGG_DSN, TICKAGG_ENV, TICKAGG_WORKERS, ...)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time

import click

from . import db, queries
from .errors import (
    DatabaseUnavailable,
    HierarchyDoesNotNest,
    InputFormatError,
    InvalidArgument,
    TickaggError,
    UnknownSymbol,
    UnknownTimeframeOrCalendar,
    wrap_exceptions,
)
from .logging_setup import configure as configure_logging

# A task's work is one statement in PostgreSQL: one worker per CPU keeps the
# server busy (a backfill's levels and kinds run side by side) without queueing.
DEFAULT_WORKERS = min(os.cpu_count() or 1, 8)
# How long `run --until-idle` waits, beyond one lease, for tasks other runners hold
OTHER_RUNNERS_GRACE_SECONDS = 30

log = logging.getLogger("tickagg")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REJECTED, EXIT_UNAVAILABLE, EXIT_INCOMPLETE = 0, 1, 2, 3, 4, 5


class Ctx:
    def __init__(self, dsn: str | None, env: str):
        self.dsn = dsn
        self.env = env
        self._pool = None

    def require_dsn(self) -> str:
        if not self.dsn:
            raise click.UsageError("no database: pass --dsn or set TICKAGG_DSN")
        return self.dsn

    def pool(self, max_size: int = 2):
        if self._pool is None:
            self._pool = db.make_pool(self.require_dsn(), max_size=max_size)
        return self._pool

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _fail(exc: TickaggError, code: int = EXIT_ERROR) -> None:
    text = str(exc)
    if isinstance(exc, DatabaseUnavailable):
        text = " ".join(text.split())  # libpq's connection errors span several lines
    click.echo(f"error: {db.mask_dsn(text)}", err=True)
    raise SystemExit(code)


class TickaggGroup(click.Group):
    """Turns tickagg errors into one clean line on stderr and exit 1
    (exit 2 for bad input files, 4 when the database cannot be reached)."""

    def invoke(self, ctx):
        try:
            # a psycopg error no command translated (a connection lost at a chunk's
            # commit during a server restart) is still one line, not a traceback
            with wrap_exceptions():
                return super().invoke(ctx)
        except InputFormatError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from None
        except DatabaseUnavailable as exc:
            _fail(exc, EXIT_UNAVAILABLE)
        except TickaggError as exc:
            _fail(exc)


def _parse_ts(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 timestamp: {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def _warn_password_on_command_line(dsn: str) -> None:
    """A long-running process shows its arguments to every local user (ps), so a
    password given with --dsn leaks for as long as the daemon runs."""
    source = click.get_current_context().find_root().get_parameter_source("dsn")
    if source is click.core.ParameterSource.COMMANDLINE and db.mask_dsn(dsn) != dsn:
        log.warning(
            "the --dsn on the command line holds a password, which every local user can read"
            " in the process list; give it in TICKAGG_DSN (e.g. a systemd EnvironmentFile of"
            " mode 0600) or keep the password in a passfile (~/.pgpass or PGPASSFILE)"
        )


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(
    cls=TickaggGroup,
    context_settings={"auto_envvar_prefix": "TICKAGG", "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--dsn",
    envvar="TICKAGG_DSN",
    show_envvar=True,
    help="PostgreSQL connection string (libpq URL or key=value).",
)
@click.option(
    "--env",
    "env",
    type=click.Choice(["prod", "test"]),
    default="prod",
    envvar="TICKAGG_ENV",
    show_envvar=True,
    show_default=True,
    help="Which registry flag selects tasks (active / test_active).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="TICKAGG_LOG_FORMAT",
    show_envvar=True,
    show_default=True,
)
@click.option(
    "--log-level",
    default="INFO",
    envvar="TICKAGG_LOG_LEVEL",
    show_envvar=True,
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--clickhouse-url",
    envvar="TICKAGG_CLICKHOUSE_URL",
    show_envvar=True,
    default=None,
    help="ClickHouse target: chdb:///abs/path (embedded engine) or http://host:8123. "
    "Enables export tasks and the ClickHouse DDL in migrate.",
)
@click.option(
    "--clickhouse-database",
    envvar="TICKAGG_CLICKHOUSE_DATABASE",
    show_envvar=True,
    default="tickagg",
    show_default=True,
    help="ClickHouse database of `aggregates` (created when missing).",
)
@click.pass_context
def cli(ctx, dsn, env, log_format, log_level, clickhouse_url, clickhouse_database):
    """tickagg: gap-aware multi-timeframe OHLCV bars inside PostgreSQL."""
    configure_logging(log_format, log_level)
    obj = Ctx(dsn, env)
    obj.clickhouse_url = clickhouse_url
    obj.log_format = log_format
    obj.clickhouse_database = clickhouse_database
    obj.log_format = log_format
    ctx.obj = obj
    ctx.call_on_close(obj.close)


# --- migrate -----------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be applied.")
@click.option(
    "--rollback", type=int, default=None, metavar="N", help="Roll back the last N migrations."
)
@click.option(
    "--clickhouse-cluster",
    envvar="TICKAGG_CLICKHOUSE_CLUSTER",
    show_envvar=True,
    default=None,
    metavar="NAME",
    help="Apply the ClickHouse DDL ON CLUSTER NAME as Replicated*MergeTree tables plus a "
    "Distributed `aggregates` (a server with that cluster; see `clickhouse-ddl`).",
)
@click.option(
    "--timescaledb",
    is_flag=True,
    help="Also make data_bars a TimescaleDB hypertable (needs TimescaleDB 2.18+ in the "
    "server's shared_preload_libraries; without it nothing changes and the command fails).",
)
@click.option(
    "--compress-after",
    default=None,
    metavar="LENGTH",
    help="With --timescaledb: compress data_bars chunks older than this (e.g. 30d).",
)
@click.pass_obj
def migrate(
    obj: Ctx, dry_run, rollback, clickhouse_cluster=None, timescaledb=False, compress_after=None
):
    """Apply pending migrations, then every view and function file."""
    from . import migrate as m

    if compress_after and not timescaledb:
        raise click.UsageError("--compress-after needs --timescaledb")
    try:
        if rollback:
            result = m.rollback(obj.require_dsn(), rollback)
        else:
            result = m.migrate(
                obj.require_dsn(),
                dry_run=dry_run,
                timescaledb=timescaledb,
                compress_after=_parse_length(compress_after) if compress_after else None,
            )
    except TickaggError:
        raise
    except Exception as exc:  # psycopg / yoyo errors from the migrator
        import psycopg

        from .errors import translate

        if isinstance(exc, psycopg.Error):
            raise translate(exc) from exc
        raise
    if isinstance(result, dict) and getattr(obj, "clickhouse_url", None) and not dry_run:
        from . import clickhouse

        ch = clickhouse.connect(obj.clickhouse_url, obj.clickhouse_database)
        result.update(clickhouse.migrate(ch, cluster=clickhouse_cluster))
    if isinstance(result, dict):
        for k, v in result.items():
            click.echo(f"{k}: {v}")
    elif result is not None:
        click.echo(str(result))


# --- symbols -----------------------------------------------------------------


@cli.group()
def symbols():
    """Manage the instrument registry."""


@symbols.command("add")
@click.argument("symbol")
@click.option("--calendar", required=True, help="Calendar code, e.g. forex_24x5.")
@click.option("--mandatory", is_flag=True, help="Failures mark hard_failed, never disable.")
@click.option(
    "--source",
    "source_kind",
    type=click.Choice(["bars", "ticks"]),
    default="bars",
    show_default=True,
)
@click.option(
    "--price", "price_kind", type=click.Choice(["last", "mid"]), default="last", show_default=True
)
@click.option("--asset-class", default=None)
@click.option("--inactive", is_flag=True, help="Register with active = false.")
@click.option("--test-active", is_flag=True, help="Also active in the test env.")
@click.pass_obj
def symbols_add(
    obj: Ctx,
    symbol,
    calendar,
    mandatory,
    source_kind,
    price_kind,
    asset_class,
    inactive,
    test_active,
):
    """Register (or update) SYMBOL."""
    with obj.pool().connection() as conn, conn.transaction():
        res = queries.register_symbol(
            conn,
            symbol,
            calendar,
            asset_class=asset_class,
            source_kind=source_kind,
            is_mandatory=mandatory,
            price_kind=price_kind,
            active=not inactive,
            test_active=test_active,
        )
    click.echo(json.dumps(res, default=str))


@symbols.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_list(obj: Ctx, as_json):
    """List registered instruments."""
    with obj.pool().connection() as conn:
        rows = queries.list_symbols(conn)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no symbols registered")
        return
    cols = list(rows[0].keys())
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


# --- sync --------------------------------------------------------------------


@cli.command()
@click.option(
    "--start",
    default=None,
    help="agg_start_utc for new tasks (ISO 8601); earlier than existing tasks' start, it"
    " also rewinds them so the stretch before their old start gets derived.",
)
@click.pass_obj
def sync(obj: Ctx, start):
    """Create/update/disable tasks from the registry."""
    with obj.pool().connection() as conn, conn.transaction():
        res = queries.sync_agg_state_from_registry(conn, obj.env, _parse_ts(start))
        if getattr(obj, "clickhouse_url", None):
            res.update(queries.sync_export_tasks(conn, obj.env, _parse_ts(start)))
    click.echo(json.dumps(res, default=str))
    if res.get("tasks_rewound"):
        click.echo(
            f"rewound {res['tasks_rewound']} tasks to start at {start}: the next runs derive"
            " the bars before their old start",
            err=True,
        )


# --- ingest ------------------------------------------------------------------


@cli.group()
def ingest():
    """Load market data files."""


@ingest.command("bars")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--source",
    default=None,
    help="Source for rows without a source column (e.g. polygon_historical).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Database sessions that land the file at once, each judging its share of"
    " the rows [default: 2 for a file over 16 MB, else 1].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ingest_bars(obj: Ctx, file, source, jobs, as_json):
    """Load 1-minute bars from CSV (.csv, .csv.gz) or Parquet.

    Exit 0 when every row landed or was unchanged, 3 when rows were rejected,
    2 when the file itself is unreadable."""
    from .ingest import format_result, ingest_bars_file, open_bars_file
    from .ingest_progress import ingest_progress

    open_bars_file(file)  # header problems exit 2 before touching the database
    with ingest_progress("ingest bars", quiet=obj.log_format == "json") as progress:
        res = ingest_bars_file(obj.pool(max_size=max(2, jobs or 0)), file, source, progress, jobs)
    if as_json:
        _echo_json(res)
    else:
        click.echo(format_result(res), nl=False)
    if (res.get("rows_rejected") or 0) > 0:
        raise SystemExit(EXIT_REJECTED)


@ingest.command("ticks")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ingest_ticks(obj: Ctx, file, as_json):
    """Load ticks from CSV (.csv, .csv.gz) or Parquet with the header
    canonical_symbol, ts_utc and any of bid, ask, last, size (empty fields
    allowed). Streams the file in chunks, each committed on its own.

    Exit 0 when every tick landed or was a duplicate, 3 when ticks were
    rejected (see the view tickagg.tick_rejects_recent), 2 when the file itself
    is unreadable."""
    from .ingest import format_result
    from .ingest_progress import ingest_progress
    from .ingest_ticks import ingest_ticks_file, open_ticks_file

    open_ticks_file(file)  # header problems exit 2 before touching the database
    with ingest_progress("ingest ticks", quiet=obj.log_format == "json") as progress:
        res = ingest_ticks_file(obj.pool(), file, progress)
    if as_json:
        _echo_json(res)
    else:
        click.echo(format_result(res, "tickagg.tick_rejects_recent"), nl=False)
    if (res.get("rows_rejected") or 0) > 0:
        raise SystemExit(EXIT_REJECTED)


# --- run ---------------------------------------------------------------------


@cli.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=DEFAULT_WORKERS,
    show_default="the number of CPUs, at most 8",
    envvar="TICKAGG_WORKERS",
    show_envvar=True,
    help="Tasks run at once (one database session each); the database does the work, so "
    "more than its CPUs only adds contention.",
)
@click.option(
    "--until-idle",
    is_flag=True,
    envvar="TICKAGG_UNTIL_IDLE",
    show_envvar=True,
    help="Exit 0 once nothing is due.",
)
@click.option(
    "--lease-seconds",
    type=click.IntRange(1),
    default=360,
    show_default=True,
    envvar="TICKAGG_LEASE_SECONDS",
    show_envvar=True,
    help="How long a claim lasts; keep it above --statement-timeout so a healthy run "
    "is never taken over.",
)
@click.option(
    "--statement-timeout",
    type=click.FloatRange(0.1),
    default=300,
    show_default=True,
    envvar="TICKAGG_STATEMENT_TIMEOUT",
    show_envvar=True,
    help="Seconds per task statement.",
)
@click.option(
    "--max-windows",
    type=click.IntRange(1),
    default=None,
    envvar="TICKAGG_MAX_WINDOWS",
    show_envvar=True,
    help="Buckets per catch-up call (default: the SQL default).",
)
@click.option(
    "--poll-max",
    type=click.FloatRange(0.1),
    default=30,
    show_default=True,
    envvar="TICKAGG_POLL_MAX",
    show_envvar=True,
    help="Longest sleep between checks when no notification arrives.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0),
    default=60,
    show_default=True,
    envvar="TICKAGG_CONNECT_TIMEOUT",
    show_envvar=True,
    help="With --until-idle: seconds the database may stay unreachable before the run "
    "gives up (exit 4). Without it the runner waits for the database however long.",
)
@click.option(
    "--pool-timeout",
    type=click.FloatRange(0.1),
    default=30,
    show_default=True,
    envvar="TICKAGG_POOL_TIMEOUT",
    show_envvar=True,
    help="Seconds a worker waits for a pooled connection before it treats the database "
    "as unreachable.",
)
@click.option(
    "--others-grace",
    type=click.FloatRange(0),
    default=OTHER_RUNNERS_GRACE_SECONDS,
    show_default=True,
    help="With --until-idle: seconds beyond one --lease-seconds to wait for tasks other "
    "runners hold before exiting 5.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="TICKAGG_METRICS_PORT",
    show_envvar=True,
    help="Serve Prometheus /metrics, /healthz and /readyz on this port (off by default).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar="TICKAGG_METRICS_HOST",
    show_envvar=True,
    help="Address the metrics endpoint binds to (0.0.0.0 for every interface).",
)
@click.option(
    "--metrics-interval",
    type=click.FloatRange(0.5),
    default=15,
    show_default=True,
    envvar="TICKAGG_METRICS_INTERVAL",
    show_envvar=True,
    help="Seconds between refreshes of the database gauges.",
)
@click.pass_obj
def run(
    obj: Ctx,
    workers,
    until_idle,
    lease_seconds,
    statement_timeout,
    max_windows,
    poll_max,
    connect_timeout,
    pool_timeout,
    others_grace,
    metrics_port,
    metrics_host,
    metrics_interval,
):
    """Claim and execute due tasks until stopped (SIGTERM/SIGINT: finish, exit 0)."""
    from .loop import Runner, RunnerConfig, RunStats
    from .run_progress import RunProgress

    _warn_password_on_command_line(obj.require_dsn())
    cfg = RunnerConfig(
        dsn=obj.require_dsn(),
        env=obj.env,
        workers=workers,
        lease_seconds=lease_seconds,
        statement_timeout=statement_timeout,
        max_windows=max_windows,
        poll_max=poll_max,
        until_idle=until_idle,
        connect_timeout=connect_timeout,
        pool_timeout=pool_timeout,
        clickhouse_url=getattr(obj, "clickhouse_url", None),
        clickhouse_database=getattr(obj, "clickhouse_database", "tickagg"),
    )
    server = None
    if metrics_port is not None:
        from .metrics import MetricsServer

        server = MetricsServer(cfg.dsn, metrics_host, metrics_port, metrics_interval).start()
    runners: list[Runner] = []

    def start_runner() -> RunStats:
        runners.append(Runner(cfg, metrics=server.metrics if server else None))
        return runners[-1].run()

    try:
        # on a terminal, what is left and how fast it goes (not for a daemon's log)
        with RunProgress(
            cfg.dsn,
            cfg.env,
            lambda: (
                sum(r.stats.bars_written for r in runners),
                sum(r.stats.tasks_succeeded for r in runners),
            ),
            enabled=until_idle and obj.log_format != "json",
        ):
            if until_idle:
                stats = _run_until_idle(
                    obj, start_runner, runners, cfg.lease_seconds + others_grace
                )
            else:
                stats = start_runner()
    finally:
        if server is not None:
            server.stop()
    if until_idle:
        click.echo(
            f"idle: {stats.tasks_succeeded} tasks succeeded, "
            f"{stats.tasks_failed} failed, {stats.bars_written} bars written"
        )
        _exit_if_work_left(obj, stats.tasks_failed)


def _run_until_idle(obj: Ctx, start_runner, runners: list, wait_seconds: float):
    """Run until nothing is due. When this runner goes idle while other runners
    still hold tasks (busy ones, or a crashed one until its lease ends), wait for
    them and run again whatever their work made due, up to wait_seconds (one
    lease plus a grace period). Returns the totals of every round."""
    from .loop import RunStats

    total = RunStats()
    deadline = time.monotonic() + wait_seconds
    empty_rounds = 0  # due tasks this runner cannot take (another env's) end the wait
    while True:
        stats = start_runner()
        empty_rounds = 0 if stats.tasks_run else empty_rounds + 1
        for field in ("tasks_run", "tasks_succeeded", "tasks_failed", "leases_lost", "released"):
            setattr(total, field, getattr(total, field) + getattr(stats, field))
        total.bars_written += stats.bars_written
        if runners[-1].stop_reason != "idle":
            return total
        while True:
            with obj.pool().connection() as conn:
                left = queries.work_left(conn)
                # a crashed runner's task stays 'running' (leased) after its lease
                # ends, claimable, but due by no schedule: the next due time says so
                next_due = queries.next_due_at(conn, obj.env)
            claimable = any(r["due"] for r in left) or (
                next_due is not None and next_due <= dt.datetime.now(dt.UTC)
            )
            if claimable and empty_rounds < 2 and time.monotonic() < deadline:
                break  # another runner's work made tasks due, or its lease ended: take them
            if not any(r["leased"] for r in left) or time.monotonic() >= deadline:
                return total
            time.sleep(0.5)


def _exit_if_work_left(obj: Ctx, failed: int) -> None:
    """`run --until-idle` in a script (`ingest && run --until-idle && export`) must
    not exit 0 while bars are incomplete: runs failed, or tasks are still leased
    (by a crashed runner, until its lease ends), backing off or given up on."""
    with obj.pool().connection() as conn:
        left = queries.work_left(conn)
    if not failed and not left:
        return
    parts = [f"{failed} runs failed"] if failed else []
    for r in left:
        counts = ", ".join(
            f"{r[k]} {k.replace('_', ' ')}"
            for k in ("due", "leased", "backing_off", "given_up")
            if r[k]
        )
        parts.append(f"{r['task_kind']}: {counts}")
    click.echo(
        "incomplete: " + "; ".join(parts) + " (`tickagg status` shows them; run again later)",
        err=True,
    )
    raise SystemExit(EXIT_INCOMPLETE)


# --- status ------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--all", "all_tasks", is_flag=True, help="Also list every task (one row per task).")
@click.option("--symbol", default=None, help="Also list every task of this symbol.")
@click.pass_obj
def status(obj: Ctx, as_json, all_tasks, symbol):
    """Tasks per kind and timeframe, the tasks that need a look, health and drift."""
    from . import status as st

    with obj.pool().connection() as conn:
        data = st.collect(conn, all_tasks=all_tasks, symbol=symbol)
    if as_json:
        click.echo(st.to_json(data))
    else:
        st.render(data)


# --- tasks and doctor ----------------------------------------------------------

TASK_KINDS = [
    "rollup",
    "ticks_1m",
    "export",
    "gap_scan",
    "gap_scan_history",
    "ticks_retention",
    "indicators",
]


def _task_selector(f):
    f = click.option(
        "--kind",
        "task_kind",
        type=click.Choice(TASK_KINDS),
        default=None,
        help="Only this task kind (default: every kind).",
    )(f)
    f = click.option(
        "--timeframe", default=None, help="Only this timeframe (default: every timeframe)."
    )(f)
    return click.argument("symbol")(f)


@cli.group()
def tasks():
    """Enable, disable or reset the tasks of a symbol."""


def _set_enabled(obj: Ctx, symbol, timeframe, task_kind, enabled: bool) -> None:
    with obj.pool().connection() as conn, conn.transaction():
        res = queries.agg_task_set_enabled(conn, symbol, timeframe, task_kind, enabled)
    click.echo(json.dumps(res, default=str))


@tasks.command("enable")
@_task_selector
@click.pass_obj
def tasks_enable(obj: Ctx, symbol, timeframe, task_kind):
    """Enable tasks of SYMBOL (an auto-disabled optional task becomes idle again)."""
    _set_enabled(obj, symbol, timeframe, task_kind, True)


@tasks.command("disable")
@_task_selector
@click.pass_obj
def tasks_disable(obj: Ctx, symbol, timeframe, task_kind):
    """Disable tasks of SYMBOL; `tickagg sync` keeps them disabled until enabled."""
    _set_enabled(obj, symbol, timeframe, task_kind, False)


@tasks.command("reset")
@_task_selector
@click.option(
    "--force",
    is_flag=True,
    help="Also reset hard_failed tasks (acknowledges the failure) and tasks under a live lease.",
)
@click.option(
    "--cursor",
    default=None,
    help="Also set the cursor (ISO 8601, UTC when no offset) to the start of the bucket"
    " holding it: back, the bars after it are built again; forward, only as far as the"
    " source has data. Admin role only.",
)
@click.pass_obj
def tasks_reset(obj: Ctx, symbol, timeframe, task_kind, force, cursor):
    """Reset tasks of SYMBOL to idle, due now: streaks, lease and last error cleared,
    cursor kept unless --cursor."""
    with obj.pool().connection() as conn, conn.transaction():
        if cursor is None:
            res = queries.agg_task_reset(conn, symbol, timeframe, task_kind, force)
        else:
            res = queries.agg_task_set_cursor(
                conn, symbol, timeframe, task_kind, _parse_ts(cursor), force
            )
    click.echo(json.dumps(res, default=str))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def doctor(obj: Ctx, as_json):
    """Check grants, search_path pinning, migrations and drift, stuck leases and
    bloat; prints a fix for each problem. Exit 1 on any FAIL. Run as the admin role."""
    from . import doctor as doc

    with obj.pool().connection() as conn:
        checks = doc.run_checks(conn)
    click.echo(doc.to_json(checks) if as_json else doc.render(checks))
    if doc.failed(checks):
        raise SystemExit(EXIT_ERROR)


# --- demo --------------------------------------------------------------------


@cli.command()
@click.option(
    "--data-dir", default=".tickagg-demo/pg", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--weeks", type=click.IntRange(1, 52), default=4, show_default=True)
@click.option("--keep-running", is_flag=True, help="Leave the cluster up and print its DSN.")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--no-clickhouse",
    is_flag=True,
    help="Skip the export to the embedded ClickHouse (<data-dir>/../clickhouse) and verify.",
)
def demo(data_dir, weeks, keep_running, workers, seed, no_clickhouse):
    """Private PostgreSQL + synthetic data + the runner, end to end."""
    from .demo import run_demo

    run_demo(
        data_dir=data_dir,
        weeks=weeks,
        keep_running=keep_running,
        workers=workers,
        seed=seed,
        with_clickhouse=not no_clickhouse,
    )


# --- rebuild -----------------------------------------------------------------

# lengths like 7d, 12h, 2w: rebuild --chunk and migrate --compress-after
_LENGTH_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _parse_length(value: str) -> dt.timedelta:
    unit = _LENGTH_UNITS.get(value[-1:].lower())
    try:
        n = int(value[:-1])
    except ValueError:
        n = 0
    if unit is None or n < 1:
        raise click.BadParameter(f"expected a length like 30d, 7d, 12h or 2w, got {value!r}")
    return dt.timedelta(**{unit: n})


def _chunks(start: dt.datetime, end: dt.datetime, size: dt.timedelta) -> int:
    return max(1, -(-(end - start) // size))


@cli.command()
@click.option("--symbol", required=True, help="Canonical symbol.")
@click.option(
    "--timeframe",
    required=True,
    help="A derived timeframe (5m 15m 30m 1h 4h 1d 1w), or `all` for every one, 5m first.",
)
@click.option(
    "--from",
    "from_",
    default=None,
    help="Start (ISO 8601, UTC when no offset); default: the task's first bucket.",
)
@click.option(
    "--to", "to", default=None, help="End, exclusive (ISO 8601); default: the task's cursor."
)
@click.option(
    "--chunk",
    default="7d",
    show_default=True,
    help="Length of one transaction's slice (m, h, d or w).",
)
@click.option(
    "--cascade",
    is_flag=True,
    help="Also rebuild every timeframe above --timeframe now, in hierarchy order, instead "
    "of leaving them to the runner.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def rebuild(obj: Ctx, symbol, timeframe, from_, to, chunk, cascade, as_json):
    """Recompute materialised bars of SYMBOL over [--from, --to) from their source.

    Buckets overlapping the range are rebuilt whole; buckets after a task's cursor
    are left to catch-up. Each chunk runs tickagg.derived_rebuild_range in its own
    transaction. Changed bars dirty the timeframe above them, so higher levels follow
    through the runner (or at once with --cascade or --timeframe all)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    step = _parse_length(chunk)
    start, end = _parse_ts(from_), _parse_ts(to)
    if start is not None and end is not None and start >= end:
        raise click.BadParameter("--from must be before --to")
    with obj.pool().connection() as conn:
        tasks = queries.rebuild_task_bounds(conn, symbol)
        if not tasks:
            click.echo(f"error: no rollup tasks for {symbol!r} (tickagg sync?)", err=True)
            raise SystemExit(EXIT_ERROR)
        order = [t["timeframe"] for t in tasks]
        if timeframe == "all":
            wanted = order
        elif timeframe in order:
            wanted = order[order.index(timeframe) :] if cascade else [timeframe]
        else:
            raise click.BadParameter(
                f"{symbol} has no rollup task {timeframe!r}; choose from {', '.join(order)} or all",
                param_hint="--timeframe",
            )
        plan = []
        for t in tasks:
            if t["timeframe"] not in wanted:
                continue
            lo = max(start, t["first_bucket"]) if start is not None else t["first_bucket"]
            hi = min(end, t["cursor_ts"]) if end is not None else t["cursor_ts"]
            plan.append((t["timeframe"], lo, hi))
        total = sum(_chunks(lo, hi, step) for _, lo, hi in plan if lo < hi)

        results = []
        console = Console(stderr=True)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[bars]} bars written"),
            console=console,
            disable=not console.is_terminal,
        ) as progress:
            bar = progress.add_task(f"rebuild {symbol}", total=total, bars=0)
            written = 0
            for tf, lo, hi in plan:
                summary = {
                    "timeframe": tf,
                    "from": None,
                    "to": None,
                    "chunks": 0,
                    "buckets_rebuilt": 0,
                    "bars_written": 0,
                    "bars_deleted": 0,
                }
                progress.update(bar, description=f"rebuild {symbol} {tf}")
                at = lo
                while at < hi:
                    upto = min(at + step, hi)
                    with conn.transaction():
                        res = queries.derived_rebuild_range(conn, symbol, tf, at, upto)
                    summary["chunks"] += 1
                    for k in ("buckets_rebuilt", "bars_written", "bars_deleted"):
                        summary[k] += int(res[k])
                    if res["from"] is not None:
                        summary["from"] = summary["from"] or res["from"]
                        summary["to"] = res["to"]
                        # a chunk widened to whole buckets: go on after its last bucket
                        upto = max(upto, _parse_ts(res["to"]))
                    written += int(res["bars_written"])
                    progress.update(bar, advance=_chunks(at, upto, step), bars=written)
                    at = upto
                results.append(summary)
    later = order[order.index(wanted[-1]) + 1 :]
    if as_json:
        _echo_json({"symbol": symbol, "timeframes": results, "left_to_runner": later})
        return
    click.echo(f"{'timeframe':>9} {'buckets':>9} {'written':>9} {'deleted':>9}  range")
    for r in results:
        span = f"[{r['from']}, {r['to']})" if r["from"] else "nothing materialised in range"
        click.echo(
            f"{r['timeframe']:>9} {r['buckets_rebuilt']:>9,} {r['bars_written']:>9,} "
            f"{r['bars_deleted']:>9,}  {span}"
        )
    if later and any(r["bars_written"] or r["bars_deleted"] for r in results):
        click.echo(
            f"changed bars dirtied {', '.join(later)}: the runner rebuilds them on its next "
            "pass (`tickagg run`), or rerun with --cascade"
        )


# --- gaps and calendars ----------------------------------------------------------


def _print_table(rows: list[dict], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    cols = list(rows[0].keys())
    text = [{c: "" if r[c] is None else str(r[c]) for c in cols} for r in rows]
    widths = {c: max(len(c), *(len(r[c]) for r in text)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in text:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())


# --- reading bars --------------------------------------------------------------


@cli.command()
@click.option(
    "--symbol",
    "symbols",
    required=True,
    multiple=True,
    help="Canonical symbol; repeat for several (rows ordered by symbol, then bucket).",
)
@click.option("--timeframe", required=True, help="1m, 5m, 15m, 30m, 1h, 4h, 1d or 1w.")
@click.option("--from", "from_", default=None, help="First bucket (ISO 8601, UTC without offset).")
@click.option("--to", default=None, help="End of the window, exclusive (ISO 8601).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default=None,
    help="Output format [default: table on a terminal, else csv].",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True), default=None, help="Write to FILE."
)
@click.option(
    "--indicators", default=None, help="Comma-separated indicator names, one column each (rsi,...)."
)
@click.option(
    "--include-partial",
    is_flag=True,
    help="Also the bucket still open now (its values still move; left out by default).",
)
@click.option(
    "--fill",
    type=click.Choice(["none", "null", "prev"]),
    default="none",
    show_default=True,
    help="One row per bucket of open market time: a missing one empty (null) or flat at the"
    " previous close with zero volume (prev), flagged is_filled.",
)
@click.option(
    "--tz",
    default=None,
    help="Show times in this IANA zone, or 'calendar' for the symbol's calendar zone"
    " [default: UTC].",
)
@click.pass_obj
def bars(
    obj: Ctx, symbols, timeframe, from_, to, fmt, output, indicators, include_partial, fill, tz
):
    """Bars of a symbol and timeframe, newest minute included, in bucket order."""
    import sys
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from . import read

    names = [n.strip() for n in (indicators or "").split(",") if n.strip()]
    fmt = fmt or ("table" if (output is None and sys.stdout.isatty()) else "csv")
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("parquet is binary: pass --output FILE or redirect stdout")
    with obj.pool().connection() as conn:
        zone_name = queries.symbol_time_zone(conn, symbols[0]) if tz == "calendar" else tz
        try:
            zone = ZoneInfo(zone_name) if zone_name else None
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone: {tz!r}", param_hint="--tz") from None
        batches = read.iter_bars(
            conn, symbols, timeframe, _parse_ts(from_), _parse_ts(to), names, include_partial, fill
        )
        try:
            if fmt == "parquet":
                target = output or sys.stdout.buffer
                count = read.write_parquet(batches, target, zone, names)
            else:
                with click.open_file(output or "-", "w", encoding="utf-8") as out:
                    write = {
                        "csv": read.write_csv,
                        "json": read.write_json,
                        "table": read.write_table,
                    }[fmt]
                    count = write(batches, out, zone, names)
        except (UnknownSymbol, UnknownTimeframeOrCalendar, InvalidArgument) as exc:
            click.echo(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
            raise SystemExit(EXIT_USAGE) from None
    if fmt == "table" or output:
        click.echo(f"{count} bars", err=output is None)


@cli.command()
@click.option("--symbol", required=True, help="Canonical symbol.")
@click.option("--timeframe", required=True, help="1m, 5m, 15m, 30m, 1h, 4h, 1d or 1w.")
@click.option(
    "--from", "from_", default=None, help="First bucket (ISO 8601) [default: ~300 buckets back]."
)
@click.option("--to", default=None, help="End of the window, exclusive (ISO 8601) [default: now].")
@click.option(
    "--indicators", default=None, help="Comma-separated indicators to draw (sma_20,bb_upper,rsi)."
)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="FILE.html, FILE.png or FILE.svg.",
)
@click.pass_obj
def chart(obj: Ctx, symbol, timeframe, from_, to, indicators, output):
    """Candles with volume (and indicators) of a symbol and timeframe, into a file."""
    from pathlib import Path

    from . import chart as charts
    from . import read

    target = Path(output)
    if target.suffix.lower() not in charts.FORMATS:
        raise click.BadParameter(
            f"use a file ending in {', '.join(charts.FORMATS)}", param_hint="--output"
        )
    names = [n.strip() for n in (indicators or "").split(",") if n.strip()]
    end = _parse_ts(to) or dt.datetime.now(dt.UTC)
    start = _parse_ts(from_) or charts.default_start(timeframe, end)
    with obj.pool().connection() as conn:
        try:
            rows = [
                r
                for batch in read.iter_bars(conn, [symbol], timeframe, start, end, names, True)
                for r in batch
            ]
        except (UnknownSymbol, UnknownTimeframeOrCalendar, InvalidArgument) as exc:
            click.echo(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
            raise SystemExit(EXIT_USAGE) from None
    if not rows:
        raise click.ClickException(f"no {timeframe} bars of {symbol} in [{start}, {end})")
    try:
        charts.render(rows, names, f"{symbol} {timeframe}", target)
    except charts.ChartUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(rows)} bars drawn to {target}")


@cli.command()
@click.option("--symbol", required=True, help="Canonical symbol.")
@click.option("--timeframe", default="1m", show_default=True)
@click.option("--from", "from_", default=None, help="Window start (ISO 8601; default 7 days ago).")
@click.option(
    "--to", default=None, help="Window end, exclusive (ISO 8601; default and at most now)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.pass_obj
def gaps(obj: Ctx, symbol, timeframe, from_, to, fmt):
    """Runs of missing bars in open market time (agg_find_gaps)."""
    import csv
    import sys

    # minutes still to come, and the one under way, are not missing
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end = min(_parse_ts(to) or now, now)
    start = min(_parse_ts(from_) or end - dt.timedelta(days=7), end)
    with obj.pool().connection() as conn:
        rows = queries.agg_find_gaps(conn, symbol, timeframe, start, end)
    if fmt == "json":
        _echo_json(rows)
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["gap_start", "gap_end", "missing_candles"])
        for r in rows:
            w.writerow([r["gap_start"].isoformat(), r["gap_end"].isoformat(), r["missing_candles"]])
    else:
        unit = "minutes" if timeframe == "1m" else f"{timeframe} bars"
        table = [
            {
                "gap_start (UTC)": f"{r['gap_start']:%Y-%m-%d %H:%M}",
                "gap_end (UTC)": f"{r['gap_end']:%Y-%m-%d %H:%M}",
                f"missing {unit}": r["missing_candles"],
                "length": str(r["gap_end"] - r["gap_start"]),
            }
            for r in rows
        ]
        _print_table(table, f"no gaps for {symbol} {timeframe} in [{start}, {end})")
        if rows:
            total = sum(r["missing_candles"] for r in rows)
            click.echo(f"{len(rows)} gaps, {total} missing {unit} in [{start}, {end})")


@cli.group(invoke_without_command=True)
@click.pass_context
def timeframes(ctx):
    """List timeframes and their rollup sources; `timeframes add` makes a custom one."""
    if ctx.invoked_subcommand is not None:
        return
    with ctx.obj.pool().connection() as conn:
        rows = queries.list_timeframes(conn)
    _print_table(
        [
            {
                "timeframe": r["timeframe"],
                "kind": r["bucket_kind"],
                "step": _fmt_interval(r["step"]),
                "built from": r["source_timeframe"] or "ticks or a vendor",
            }
            for r in rows
        ],
        "no timeframes",
    )


def _fmt_interval(value: dt.timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    for size, unit in ((7 * 1440, "w"), (1440, "d"), (60, "h")):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


@timeframes.command("add")
@click.argument("name")
@click.option("--step", required=True, help="Length of a bucket: 3m, 65m, 2h (under a day).")
@click.option("--source", required=True, help="Timeframe it is built from (1m or a fixed step).")
@click.option(
    "--for-symbols/--no-symbols",
    default=True,
    show_default=True,
    help="Add it to every registered symbol's wanted timeframes (then `tickagg sync`).",
)
@click.pass_obj
def timeframes_add(obj: Ctx, name, step, source, for_symbols):
    """Add a custom fixed-step timeframe; refused when its buckets would not nest."""
    with obj.pool().connection() as conn:
        try:
            row = queries.timeframe_add(conn, name, _parse_length(step), source, for_symbols)
        except (InvalidArgument, UnknownTimeframeOrCalendar, HierarchyDoesNotNest) as exc:
            click.echo(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
            raise SystemExit(EXIT_USAGE) from None
    click.echo(
        f"timeframe {row['timeframe']}: {_fmt_interval(row['step'])} buckets built from"
        f" {row['source_timeframe']}, wanted by {row['symbols']} more symbols;"
        " `tickagg sync` creates its tasks, `tickagg bars --timeframe"
        f" {row['timeframe']}` and tickagg.ohlcv read it"
    )


@cli.group(invoke_without_command=True)
@click.option("--calendar", default=None, help="Only this calendar's holidays.")
@click.option("--year", type=int, default=None, help="Only holidays of this year.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def calendars(ctx, calendar, year, as_json):
    """List calendars, holidays and early closes; `calendars import` fills them."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Ctx = ctx.obj
    with obj.pool().connection() as conn:
        cals = queries.list_calendars(conn)
        days = queries.list_calendar_holidays(conn, calendar, year)
    if as_json:
        _echo_json({"calendars": cals, "holidays": days})
        return
    _print_table(
        [
            {
                "calendar": c["calendar_code"],
                "time_zone": c["time_zone"],
                "session": f"{c['session_open_offset']} - {c['session_close_offset']}",
                "trading_isodows": ",".join(map(str, c["trading_isodows"])),
                "holidays": c["holidays"],
                "early_closes": c["early_closes"],
            }
            for c in cals
            if calendar is None or c["calendar_code"] == calendar
        ],
        "no calendars",
    )
    click.echo("")
    _print_table(
        [
            {
                "calendar": d["calendar_code"],
                "date": d["holiday_date"],
                "kind": d["kind"],
                "closes": d["early_close"] or "",
                "description": d["description"],
            }
            for d in days
        ],
        "no holidays or early closes" + (f" in {year}" if year else ""),
    )


@calendars.command("import")
@click.option(
    "--calendar",
    "calendar_codes",
    type=click.Choice(["us_equity", "nse_equity"]),
    multiple=True,
    required=True,
    help="us_equity (XNYS) or nse_equity (XBOM); repeatable.",
)
@click.option("--from-year", type=int, required=True)
@click.option("--to-year", type=int, required=True)
@click.pass_obj
def calendars_import(obj: Ctx, calendar_codes, from_year, to_year):
    """Fill holidays and early closes from the exchange_calendars package."""
    from .calendars import exchange_days

    if to_year < from_year:
        raise click.BadParameter("--to-year must not be before --from-year")
    for code in calendar_codes:
        rows, warnings = exchange_days(code, from_year, to_year)
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        changed = 0
        with obj.pool().connection() as conn, conn.transaction():
            for r in rows:
                res = queries.calendar_set_holiday(
                    conn, code, r["holiday_date"], r["early_close"], r["description"]
                )
                changed += bool(res and res.get("changed"))
        holidays = sum(1 for r in rows if r["early_close"] is None)
        click.echo(
            f"{code}: {holidays} holidays, {len(rows) - holidays} early closes for "
            f"{from_year}-{to_year} ({changed} rows added or changed)"
        )


# --- ClickHouse: export and verify --------------------------------------------


def _clickhouse(obj: Ctx):
    from . import clickhouse

    if not getattr(obj, "clickhouse_url", None):
        raise click.UsageError(
            "no ClickHouse target: pass --clickhouse-url or set TICKAGG_CLICKHOUSE_URL"
        )
    return clickhouse.connect(obj.clickhouse_url, obj.clickhouse_database)


@cli.command("export")
@click.option("--symbol", default=None, help="Only this symbol (default: every export task).")
@click.option("--batch-size", type=click.IntRange(1), default=50000, show_default=True)
@click.option(
    "--refresh-views",
    is_flag=True,
    help="Afterwards refresh daily_bar_counts and daily_rollup now (SYSTEM REFRESH VIEW).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def export_cmd(obj: Ctx, symbol, batch_size, refresh_views, as_json):
    """Export bar changes to ClickHouse now (one shot; the runner does it continuously).
    Creates missing export tasks first."""
    from . import clickhouse

    ch = _clickhouse(obj)
    pool = obj.pool()
    with pool.connection() as conn, conn.transaction():
        queries.sync_export_tasks(conn, obj.env)
        symbols = queries.export_symbols(conn, symbol)
    if symbol and not symbols:
        raise click.UsageError(
            f"no enabled export task for {symbol} (is it registered and active?)"
        )
    results = [clickhouse.export_once(pool, ch, s, batch_size) for s in symbols]
    refreshed = clickhouse.refresh_views(ch) if refresh_views else []
    if as_json:
        _echo_json(results)
    else:
        for r in results:
            if r["busy"]:
                state = "busy (another runner holds the task)"
            elif r["complete"]:
                state = f"change_no {r['cursor']}"
            else:
                state = f"change_no {r['cursor']}, stopped short (a transaction is still open)"
            click.echo(f"{r['symbol']}: {r['rows']} rows in {r['batches']} batches, {state}")
        if refreshed:
            click.echo(f"refreshed {', '.join(refreshed)}")


@cli.command()
@click.option("--symbol", default=None, help="Only this symbol (default: every export task).")
@click.option("--from", "from_", default=None, help="First bar timestamp (ISO 8601).")
@click.option("--to", default=None, help="End, exclusive (ISO 8601).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(obj: Ctx, symbol, from_, to, as_json):
    """Compare PostgreSQL's current bars with `aggregates FINAL` per symbol, timeframe
    and UTC day (count and content checksum). Exit 1 on any drift."""
    from . import clickhouse

    ch = _clickhouse(obj)
    with obj.pool().connection() as conn:
        symbols = [symbol] if symbol else queries.export_symbols(conn, None)
        if not symbols:
            raise TickaggError(
                "nothing to verify: no symbol has an export task"
                " (`tickagg export` or `tickagg sync` with --clickhouse-url creates them)"
            )
        drift, days = [], 0
        for s in symbols:
            d, n = clickhouse.compare_symbol(conn, ch, s, _parse_ts(from_), _parse_ts(to))
            drift.extend(d)
            days += n
    if not days:
        raise TickaggError(
            f"nothing compared: neither PostgreSQL nor ClickHouse holds a bar of the"
            f" {len(symbols)} symbol(s){' in the range' if from_ or to else ''}"
        )
    if as_json:
        _echo_json({"symbols": symbols, "drift": drift})
    else:
        for d in drift:
            click.echo(
                f"DRIFT {d['symbol']} {d['timeframe']} {d['day']}: postgres {d['pg_bars']} bars,"
                f" clickhouse {d['ch_bars']} bars, checksum"
                f" {'equal' if d['checksum_match'] else 'differs'}"
            )
        click.echo(f"verified {len(symbols)} symbols: {len(drift)} day(s) with drift")
    if drift:
        raise SystemExit(EXIT_ERROR)


# --- external data (ClickHouse) --------------------------------------------------


@ingest.command("external")
@click.argument("table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ingest_external(obj: Ctx, table, file, as_json):
    """Load external data (CSV with a header, or JSON Lines) into ClickHouse TABLE
    (external_economic_calendar, external_fred_economic, external_crypto_sentiment,
    external_fear_greed_index, external_commodity_prices).

    Every row is validated; rejects are printed with line and reason and kept in
    `external_rejects`. Exit 0 when every row landed, 3 when rows were rejected,
    2 when the file or table name is unusable."""
    from . import external

    res = external.ingest_file(_clickhouse(obj), table, file)
    if as_json:
        _echo_json(res)
    else:
        click.echo(external.format_result(res), nl=False)
    if res["rows_rejected"]:
        raise SystemExit(EXIT_REJECTED)


@cli.group("external")
def external_group():
    """External data tables in ClickHouse."""


@external_group.command("sessions-snapshot")
@click.option("--at", default=None, help="Instant (ISO 8601); default: PostgreSQL's now().")
@click.pass_obj
def external_sessions_snapshot(obj: Ctx, at):
    """Insert one external_market_sessions row: the calendars (market_calendars) whose
    trading session is open at that instant, by tickagg.calendar_sessions."""
    from . import external

    ch = _clickhouse(obj)
    with obj.pool().connection() as conn:
        snap = external.sessions_snapshot(conn, ch, _parse_ts(at))
    click.echo(json.dumps(snap, default=str))


@external_group.command("set-ttl")
@click.argument("days", type=click.IntRange(1, 10000))
@click.pass_obj
def external_set_ttl(obj: Ctx, days):
    """Keep external rows DAYS days after collected_at (ALTER TABLE ... MODIFY TTL)."""
    from . import external

    for t in external.set_ttl(_clickhouse(obj), days):
        click.echo(f"{t}: TTL {days} days")


@cli.command("clickhouse-ddl")
@click.option("--cluster", default=None, metavar="NAME", help="Render for ON CLUSTER NAME.")
def clickhouse_ddl(cluster):
    """Print the ClickHouse DDL that migrate applies (for --cluster: Replicated*MergeTree
    ON CLUSTER and a Distributed `aggregates`)."""
    from . import clickhouse

    for name, stmt in clickhouse.render(cluster=cluster):
        click.echo(f"-- {name}\n{stmt};\n")


def main(argv=None):
    return cli.main(args=argv, prog_name="tickagg")


if __name__ == "__main__":
    main()
