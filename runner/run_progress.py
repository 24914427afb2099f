"""`tickagg run --until-idle` progress on a terminal: tasks due and running per
kind, the slowest cursor among them, bars written so far and their rate,
redrawn about once a second from tickagg.run_progress (the task table, never the
bar tables). Log lines keep scrolling above it."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Callable

from . import db, queries

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


def _ago(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "ahead"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h behind"
    if hours:
        return f"{hours}h{minutes}m behind"
    return f"{minutes}m{seconds}s behind"


def render(rows: list[dict], bars: int, tasks_done: int, elapsed: float, now: dt.datetime):
    """The display for the rows of queries.run_progress and the runner's counts."""
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        ("tickagg run --until-idle", "bold"),
        f"  {int(elapsed // 60)}m{int(elapsed % 60):02d}s"
        f"  {tasks_done:,} runs done  {bars:,} bars written"
        f" ({bars / elapsed if elapsed > 0 else 0:,.0f}/s)",
    )
    table = Table(box=None, show_edge=False, padding=(0, 1), title=head, title_justify="left")
    table.add_column("kind")
    table.add_column("due", justify="right")
    table.add_column("running", justify="right")
    table.add_column("slowest cursor of those")
    for r in rows:
        slowest = ""
        if r["slowest_cursor"] is not None:
            slowest = (
                f"{r['slowest_timeframe']} {r['slowest_cursor']:%Y-%m-%d %H:%M}"
                f" ({_ago(now - r['slowest_cursor'])})"
            )
        table.add_row(r["task_kind"], f"{r['due']:,}", f"{r['running']:,}", slowest)
    return table


class RunProgress:
    """Context manager: while open, a thread redraws the display on stderr, on
    its own connection. Disabled (does nothing) unless stderr is a terminal; rich
    is imported only then (a daemon starts without it)."""

    def __init__(
        self, dsn: str, env: str, counts: Callable[[], tuple[int, int]], enabled: bool = True
    ):
        """counts() -> (bars written, runs done) of the runner so far."""
        self.dsn, self.env, self.counts = dsn, env, counts
        self.enabled = enabled and sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None
        self._handlers: list[logging.StreamHandler] = []

    def __enter__(self) -> RunProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(stderr=True), redirect_stderr=True, transient=True)
        self._live.start()
        # log handlers write to the stderr they were made with: point them at the
        # redirected one, so log lines print above the display instead of through it
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "_tickagg", False):
                self._handlers.append(h)
                h.setStream(sys.stderr)
        self._thread = threading.Thread(target=self._loop, name="tk-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._live.stop()
        for h in self._handlers:
            h.setStream(sys.stderr)

    def _loop(self) -> None:
        started = time.monotonic()
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.dsn, connect_timeout=5)
                rows = queries.run_progress(conn, self.env)
                now = dt.datetime.now(dt.UTC)
                bars, done = self.counts()
                self._live.update(render(rows, bars, done, time.monotonic() - started, now))
            except Exception as exc:  # noqa: BLE001 - a display must never stop the run
                log.debug("progress query failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(REFRESH_SECONDS)
        if conn is not None:
            conn.close()
