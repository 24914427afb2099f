"""`tickagg status`: tasks per kind and timeframe, the tasks that need a look, health,
waits, storage and migration drift (or JSON). Every task only on request (`--all`,
`--symbol`): a market of thousands of symbols has tens of thousands of tasks."""

from __future__ import annotations

import datetime as dt
import json
import logging

from psycopg.rows import tuple_row
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import queries
from .errors import TickaggError, wrap_exceptions

log = logging.getLogger(__name__)

STATUS_STYLE = {"idle": "green", "running": "cyan", "hard_failed": "bold red", "disabled": "dim"}


def fmt_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.timedelta):
        secs = int(v.total_seconds())
        sign = "-" if secs < 0 else ""
        secs = abs(secs)
        d, rem = divmod(secs, 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        return f"{sign}{d}d{h:02d}h{m:02d}m" if d else f"{sign}{h:02d}:{m:02d}:{s:02d}"
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(v)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# tasks listed by name when they fail; the summary counts all of them
ATTENTION_LIMIT = 50


def collect(conn, *, all_tasks: bool = False, symbol: str | None = None) -> dict:
    """The status data; "tasks" (every task, or one symbol's) only when asked for."""
    if symbol is not None:
        tasks = queries.task_status_of_symbol(conn, symbol)
    elif all_tasks:
        tasks = queries.task_status(conn)
    else:
        tasks = None
    summary = queries.task_summary(conn)
    attention = queries.tasks_needing_attention(conn, ATTENTION_LIMIT)
    health = queries.health_summary(conn)
    waits = queries.task_waits(conn)
    drift: list[dict] = []
    drift_error = None
    from .migrate import drift as migrate_drift

    saved = conn.row_factory
    conn.row_factory = tuple_row  # runner.migrate reads rows by position
    try:
        with wrap_exceptions():
            drift = [dict(d) for d in migrate_drift(conn)]
    except TickaggError as exc:
        drift_error = str(exc)
    finally:
        conn.row_factory = saved
    storage = queries.ticks_storage(conn)
    data = {
        "summary": summary,
        "attention": attention,
        "attention_total": sum(r["hard_failed"] + r["failing"] for r in summary),
        "health": health,
        "waits": waits,
        "storage": storage,
        "drift": drift,
        "drift_error": drift_error,
    }
    if tasks is not None:
        data["tasks"] = tasks
    return data


def to_json(data: dict) -> str:
    def default(o):
        if isinstance(o, dt.timedelta):
            return o.total_seconds()
        if isinstance(o, (dt.datetime, dt.date)):
            return o.isoformat()
        return str(o)

    return json.dumps(data, default=default, indent=2)


def render(data: dict, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and files: no colour, no squeezing
            console = Console(width=max(console.width, 180), no_color=True)
    if "tasks" in data:
        _render_tasks(console, "tickagg tasks", data["tasks"])
    else:
        _render_summary(console, data["summary"])
        if data["attention"]:
            _render_tasks(
                console, "tasks that need a look (failing or hard_failed)", data["attention"]
            )
            more = data["attention_total"] - len(data["attention"])
            if more > 0:
                console.print(f"... and {more} more (`tickagg status --all`, or `--symbol S`)")
    _render_footer(console, data)


def _render_summary(console: Console, summary: list[dict]) -> None:
    table = Table(title="tickagg tasks per kind and timeframe", box=None, pad_edge=False)
    cols = [
        ("kind", "task_kind"),
        ("tf", "timeframe"),
        ("tasks", "tasks"),
        ("on", "enabled"),
        ("off by user", "disabled_by_user"),
        ("running", "running"),
        ("failing", "failing"),
        ("hard_failed", "hard_failed"),
        ("oldest cursor", "oldest_cursor"),
        ("newest cursor", "newest_cursor"),
        ("due", "due"),
        ("max lag", "max_lag"),
        ("next run", "next_run_at"),
        ("runs", "runs_total"),
        ("bars", "bars_written_total"),
    ]
    for header, _ in cols:
        table.add_column(header, no_wrap=True)
    for row in summary:
        cells = [escape(fmt_value(row.get(c))) for _, c in cols]
        if row["hard_failed"]:
            cells[7] = f"[bold red]{cells[7]}[/]"
        if row["failing"]:
            cells[6] = f"[yellow]{cells[6]}[/]"
        table.add_row(*cells)
    console.print(table)
    totals = {
        k: sum(r[k] for r in summary)
        for k in ("tasks", "enabled", "running", "failing", "hard_failed")
    }
    console.print(", ".join(f"{k}={v}" for k, v in totals.items()))


def _render_tasks(console: Console, title: str, tasks: list[dict]) -> None:
    cols = [
        "canonical_symbol",
        "timeframe",
        "task_kind",
        "status",
        "enabled",
        "is_mandatory",
        "cursor_ts",
        "lag",
        "hard_fail_streak",
        "transient_fail_streak",
        "next_run_at",
        "last_successful_at_utc",
        "runs_total",
        "bars_written_total",
        "last_error",
    ]
    headers = [
        "symbol",
        "tf",
        "kind",
        "status",
        "on",
        "mand",
        "cursor",
        "lag",
        "hard",
        "trans",
        "next run",
        "last success",
        "runs",
        "bars",
        "last error",
    ]
    table = Table(title=title, show_lines=False, box=None, pad_edge=False)
    for h in headers:
        if h == "last error":
            table.add_column(h, overflow="fold", ratio=1)
        else:
            table.add_column(h, no_wrap=True)
    for row in tasks:
        cells = []
        for c in cols:
            v = row.get(c)
            if c == "enabled" and row.get("disabled_by_user"):
                v = "user"  # `tasks disable`: stays off across sync until `tasks enable`
            elif isinstance(v, bool):
                v = "y" if v else "n"
            cells.append(escape(fmt_value(v)))
        style = STATUS_STYLE.get(row.get("status") or "")
        cells[3] = f"[{style}]{cells[3]}[/]" if style else cells[3]
        table.add_row(*cells)
    console.print(table)
    counts: dict[str, int] = {}
    for row in tasks:
        counts[row.get("status")] = counts.get(row.get("status"), 0) + 1
    console.print(
        f"{len(tasks)} tasks: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=str))
    )


def _render_footer(console: Console, data: dict) -> None:
    health = data.get("health") or {}
    style = {"HEALTHY": "green", "WARNING": "yellow", "DELAYED": "bold red"}
    console.print(
        "health (aggregation_health): "
        + ", ".join(
            f"[{style[k]}]{k}[/]={health.get(k, 0)}" for k in ("HEALTHY", "WARNING", "DELAYED")
        )
    )
    waits = data.get("waits") or []
    console.print(
        "due now: "
        + (
            ", ".join(
                f"{w['task_kind']}={w['due']} (oldest waited {w['oldest_wait_seconds']:.0f}s)"
                for w in waits
            )
            or "nothing"
        )
    )
    storage = data.get("storage")
    if storage:
        console.print(
            f"storage: ticks {storage['partitions']} daily partitions"
            f" ({fmt_value(storage['oldest_day'])} .. {fmt_value(storage['newest_day'])}),"
            f" {_size(storage['total_bytes'])}, ~{storage['estimated_ticks']} ticks,"
            f" retention {storage['retention']}, {storage['partitions_ahead']} days created ahead"
        )
    if data.get("drift_error"):
        console.print("migration drift: unavailable (" + escape(data["drift_error"]) + ")")
    elif data["drift"]:
        console.print("[bold yellow]migration drift:[/]")
        for d in data["drift"]:
            console.print("  " + escape(", ".join(f"{k}={fmt_value(v)}" for k, v in d.items())))
    else:
        console.print("migrations: no drift")
