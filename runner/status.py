"""`tickagg status`: task_status as a table (or JSON) plus migration drift."""

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


def collect(conn) -> dict:
    tasks = queries.task_status(conn)
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
    return {
        "tasks": tasks,
        "health": health,
        "waits": waits,
        "storage": storage,
        "drift": drift,
        "drift_error": drift_error,
    }


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
    table = Table(title="tickagg tasks", show_lines=False, box=None, pad_edge=False)
    for h in headers:
        if h == "last error":
            table.add_column(h, overflow="fold", ratio=1)
        else:
            table.add_column(h, no_wrap=True)
    for row in data["tasks"]:
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
    for row in data["tasks"]:
        counts[row.get("status")] = counts.get(row.get("status"), 0) + 1
    console.print(
        f"{len(data['tasks'])} tasks: "
        + ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=str))
    )
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
