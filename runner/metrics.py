"""Prometheus metrics, /healthz and /readyz for `tickagg run --metrics-port P`.

Counters and the duration histogram are updated by the runner as tasks finish;
gauges are refreshed from the database every `interval` seconds by a daemon
thread with its own connection. The HTTP server (stdlib http.server, daemon
thread) serves:

  /metrics  Prometheus text format
  /healthz  200 while the process is alive
  /readyz   200 when the database answers and no migration is pending and no
            function/view file drifted (runner.migrate.drift); else 503 + reason
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from psycopg.rows import tuple_row

from . import db, queries
from .errors import TickaggError, wrap_exceptions
from .loop import OutageReport

log = logging.getLogger(__name__)

TASK_STATUSES = ("idle", "running", "hard_failed", "disabled")
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Every metric the runner exports, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.tasks_run = Counter(
            "tickagg_tasks_run",
            "Task executions by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.task_duration = Histogram(
            "tickagg_task_duration_seconds",
            "Wall time of one task execution.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.bars_written = Counter(
            "tickagg_bars_written", "Bars written by successful runs.", ["timeframe"], registry=r
        )
        self.lag_max = Gauge(
            "tickagg_lag_max_seconds",
            "Largest refresh lag of enabled rollup and ticks_1m (timeframe 1m) tasks.",
            ["timeframe"],
            registry=r,
        )
        self.lag_p95 = Gauge(
            "tickagg_lag_p95_seconds",
            "95th percentile refresh lag across symbols.",
            ["timeframe"],
            registry=r,
        )
        self.tasks = Gauge("tickagg_tasks", "Tasks by status.", ["status"], registry=r)
        self.hard_failed = Gauge("tickagg_tasks_hard_failed", "Tasks in hard_failed.", registry=r)
        self.disabled = Gauge(
            "tickagg_tasks_disabled", "Tasks disabled (status or enabled = false).", registry=r
        )
        self.fail_streak = Gauge(
            "tickagg_task_fail_streak_max",
            "Longest run of consecutive failures of any task, by kind.",
            ["kind"],
            registry=r,
        )
        self.tasks_due = Gauge(
            "tickagg_tasks_due", "Tasks due now, not yet claimed, by kind.", ["kind"], registry=r
        )
        self.oldest_due_wait = Gauge(
            "tickagg_oldest_due_wait_seconds",
            "How long the task of a kind that has been due longest has waited.",
            ["kind"],
            registry=r,
        )
        self.gaps_open = Gauge("tickagg_gaps_open", "Open gaps in the gap ledger.", registry=r)
        self.oldest_gap_age = Gauge(
            "tickagg_oldest_gap_age_seconds", "Age of the oldest open gap (0: none).", registry=r
        )
        self.coverage_24h = Gauge(
            "tickagg_coverage_24h_percent",
            "Share of expected 1m bars present over the last 24 h (coverage view).",
            ["symbol"],
            registry=r,
        )
        self.coverage_7d = Gauge(
            "tickagg_coverage_7d_percent",
            "Share of expected 1m bars present over the last 7 days.",
            ["symbol"],
            registry=r,
        )
        self.export_backlog = Gauge(
            "tickagg_export_backlog",
            "Bar changes not yet exported (0 until the exporter's export_backlog view exists).",
            registry=r,
        )
        self.refresh_errors = Counter(
            "tickagg_metrics_refresh_errors", "Failed gauge refreshes.", registry=r
        )
        self.last_refresh = Gauge(
            "tickagg_metrics_last_refresh_timestamp_seconds",
            "Unix time of the last successful gauge refresh.",
            registry=r,
        )

    def observe_task(self, kind: str, timeframe: str, outcome: str, seconds: float, bars: int):
        self.tasks_run.labels(kind=kind, outcome=outcome).inc()
        self.task_duration.labels(kind=kind).observe(seconds)
        if outcome == "success":
            self.bars_written.labels(timeframe=timeframe).inc(bars)

    def refresh(self, conn) -> None:
        """Set every gauge from the database (one read-only pass)."""
        lag = queries.metrics_lag(conn)
        tasks = queries.metrics_tasks(conn)
        waits = queries.task_waits(conn)
        gaps = queries.metrics_gaps(conn)
        coverage = queries.metrics_coverage(conn)
        backlog = _export_backlog(conn)

        self.lag_max.clear()
        self.lag_p95.clear()
        for row in lag:
            self.lag_max.labels(timeframe=row["timeframe"]).set(row["lag_max"] or 0)
            self.lag_p95.labels(timeframe=row["timeframe"]).set(row["lag_p95"] or 0)
        by_status = dict.fromkeys(TASK_STATUSES, 0)
        streak: dict[str, int] = {}
        disabled = 0
        for row in tasks:
            by_status[row["status"]] = by_status.get(row["status"], 0) + row["tasks"]
            if row["status"] == "disabled" or not row["enabled"]:
                disabled += row["tasks"]
            k = row["task_kind"]
            streak[k] = max(streak.get(k, 0), row["fail_streak_max"] or 0)
        for status, n in by_status.items():
            self.tasks.labels(status=status).set(n)
        self.hard_failed.set(by_status.get("hard_failed", 0))
        self.disabled.set(disabled)
        self.fail_streak.clear()
        for k, n in streak.items():
            self.fail_streak.labels(kind=k).set(n)
        self.tasks_due.clear()
        self.oldest_due_wait.clear()
        for row in waits:
            self.tasks_due.labels(kind=row["task_kind"]).set(row["due"])
            self.oldest_due_wait.labels(kind=row["task_kind"]).set(row["oldest_wait_seconds"])
        self.gaps_open.set(gaps["open_gaps"])
        self.oldest_gap_age.set(gaps["oldest_gap_age_seconds"])
        self.coverage_24h.clear()
        self.coverage_7d.clear()
        for row in coverage:  # NULL: the market was closed throughout; no sample
            if row["coverage_24h"] is not None:
                self.coverage_24h.labels(symbol=row["canonical_symbol"]).set(row["coverage_24h"])
            if row["coverage_7d"] is not None:
                self.coverage_7d.labels(symbol=row["canonical_symbol"]).set(row["coverage_7d"])
        self.export_backlog.set(backlog)
        self.last_refresh.set(time.time())


def _export_backlog(conn) -> float:
    """Sum of export_backlog.backlog (or its row count) when the exporter's view exists."""
    if not queries.export_backlog_view_exists(conn):
        return 0.0
    with wrap_exceptions():
        cur = conn.execute("SELECT * FROM tickagg.export_backlog")
        rows = cur.fetchall()
    if rows and "backlog" in rows[0]:
        return float(sum(r["backlog"] or 0 for r in rows))
    return float(len(rows))


def readiness(dsn: str) -> tuple[bool, str]:
    """(ready, reason): the database answers, no migration pending, no drift."""
    from .migrate import drift, pending_migrations

    try:
        # runner.migrate reads rows by position
        with db.connect(dsn, connect_timeout=5, row_factory=tuple_row) as conn:
            with wrap_exceptions():
                pending = pending_migrations(conn)
                drifted = drift(conn)
    except TickaggError as exc:
        return False, f"database unavailable: {db.mask_dsn(str(exc))}"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return False, f"readiness check failed: {db.mask_dsn(str(exc))}"
    if pending:
        return False, "pending migrations: " + ", ".join(pending) + " (run tickagg migrate)"
    if drifted:
        return False, "schema drift: " + ", ".join(
            f"{d['path']} {d['kind']}" for d in drifted
        ) + " (run tickagg migrate)"
    return True, "ok"


class GaugeRefresher(threading.Thread):
    """Refresh the gauges every `interval` seconds on its own connection."""

    def __init__(self, dsn: str, metrics: Metrics, interval: float, stop_event: threading.Event):
        super().__init__(name="tk-metrics", daemon=True)
        self.dsn, self.metrics, self.interval, self.stop_event = dsn, metrics, interval, stop_event
        self._conn = None
        # a failing refresh (the database away) is logged once a minute, not every interval
        self._failing = OutageReport("metrics refresh", log, "failing", "working again")

    def refresh_once(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self.dsn)
            self.metrics.refresh(self._conn)
            self._failing.recovered()
        except Exception as exc:  # noqa: BLE001 - a bad refresh must not kill the runner
            self.metrics.refresh_errors.inc()
            self._failing.failed(exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.refresh_once()
                self.stop_event.wait(self.interval)
        finally:
            if self._conn is not None:
                self._conn.close()


def _handler(metrics: Metrics, dsn: str):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, reason = readiness(dsn)
                self._send(200 if ok else 503, (reason + "\n").encode())
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def log_message(self, fmt, *args):  # scrapes are not worth an INFO line each
            log.debug("http %s - " + fmt, self.address_string(), *args)

    return Handler


class MetricsServer:
    """The HTTP endpoint plus the gauge refresher; start() and stop()."""

    def __init__(self, dsn: str, host: str, port: int, interval: float = 15.0):
        self.dsn, self.host, self.port, self.interval = dsn, host, port, interval
        self.metrics = Metrics()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._refresher: GaugeRefresher | None = None

    def start(self) -> MetricsServer:
        self._httpd = ThreadingHTTPServer((self.host, self.port), _handler(self.metrics, self.dsn))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(
            target=self._httpd.serve_forever, name="tk-metrics-http", daemon=True
        ).start()
        self._refresher = GaugeRefresher(self.dsn, self.metrics, self.interval, self._stop)
        self._refresher.start()
        log.info("metrics on http://%s:%s/metrics (/healthz, /readyz)", self.host, self.port)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._refresher is not None:
            self._refresher.join(5)
