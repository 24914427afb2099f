"""The runner loop: claim one due task, execute it and finish it in one
transaction. Wakes on LISTEN tickagg_work or at the next due time; never
busy-polls. Safe with several workers and several processes (leases and
claim-token fencing live in SQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg_pool import ConnectionPool

from . import db, queries
from .errors import (
    DatabaseUnavailable,
    LeaseLost,
    TickaggError,
    TransientDatabaseError,
    UnknownTaskKind,
    translate,
    wrap_exceptions,
)
from .logging_setup import log_context

log = logging.getLogger(__name__)

WORK_CHANNEL = "tickagg_work"

# While the database is unavailable: the wait between attempts grows from the first
# to the last value; one log line when it goes, one every OUTAGE_REPORT_SECONDS
# while it stays away, one when it is back.
OUTAGE_BACKOFF_SECONDS = (0.5, 5.0)
# a failure's record that met a deadlock or serialization failure is tried again
# after each of these (then given up: the lease expires)
RECORD_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)
OUTAGE_REPORT_SECONDS = 60.0
# connect_timeout of an attempt while waiting (a server that drops packets)
PROBE_TIMEOUT_SECONDS = 5


@dataclasses.dataclass
class RunnerConfig:
    dsn: str
    env: str = "prod"
    workers: int = 1
    lease_seconds: int = 60
    statement_timeout: float = 300
    max_windows: int | None = None
    poll_max: float = 30
    until_idle: bool = False
    # ClickHouse target of export tasks (chdb:///path or http://host:8123); None: none
    clickhouse_url: str | None = None
    clickhouse_database: str = "tickagg"
    export_batch_size: int = 50000
    # seconds a worker waits for a pooled connection before the database counts as
    # unavailable (then the runner waits it out)
    pool_timeout: float = 30
    # until_idle only: how long the database may stay unavailable before the run
    # gives up (DatabaseUnavailable); a daemon waits for it however long it takes
    connect_timeout: float = 60
    # rollup or indicators tasks of one timeframe claimed and run as one batch; None: the
    # rollup_batch_size setting, 1: one task a run
    batch_size: int | None = None


@dataclasses.dataclass
class RunStats:
    tasks_run: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    leases_lost: int = 0
    released: int = 0
    bars_written: int = 0
    by_kind: dict = dataclasses.field(default_factory=dict)


def _reason(exc: BaseException) -> str:
    """An error on one line (libpq's connection errors span several)."""
    if isinstance(exc, psycopg.Error):
        exc = translate(exc)
    return " ".join(str(exc).split())


class OutageReport:
    """The log lines of one outage of `what`: the first failure, then one line every
    OUTAGE_REPORT_SECONDS however often it is retried, then the recovery."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger = log,
        state: str = "unavailable",
        recovered_state: str = "available again",
    ):
        self.what, self.log, self.state, self.recovered_state = what, logger, state, recovered_state
        self.since: float | None = None
        self._reported_at = 0.0

    def failed(self, exc: BaseException) -> float:
        """Note a failed attempt; returns the seconds since the outage began."""
        now = time.monotonic()
        if self.since is None:
            self.since = self._reported_at = now
            self.log.warning(
                "%s %s: %s; retrying (reported every %.0fs)",
                self.what,
                self.state,
                _reason(exc),
                OUTAGE_REPORT_SECONDS,
            )
        elif now - self._reported_at >= OUTAGE_REPORT_SECONDS:
            self._reported_at = now
            self.log.warning(
                "%s still %s after %.0fs: %s",
                self.what,
                self.state,
                now - self.since,
                _reason(exc),
            )
        return now - self.since

    def recovered(self) -> None:
        if self.since is not None:
            self.log.warning(
                "%s %s after %.0fs", self.what, self.recovered_state, time.monotonic() - self.since
            )
            self.since = None


# --- task handlers: task_kind -> fn(conn, task, config) -> finish kwargs ------


def _step_result(task: dict, res: dict, what: str, counts: tuple[str, ...]) -> dict:
    """The tail shared by the handlers whose SQL returns the catch-up jsonb (rollup,
    ticks_1m, indicators): fail on success=false, log the run, and give agg_finish
    its arguments (fenced by the cursor the task was claimed at)."""
    if res.get("success") is False:
        raise TickaggError(res.get("error") or f"{what} failed: {res}")
    log.info(
        "%s: %s %s -> %s continue=%s",
        what,
        " ".join(f"{k}={res.get(k)}" for k in counts),
        res.get("cursor_from"),
        res.get("cursor_to"),
        res.get("continue"),
    )
    return {
        "cursor_from": task["cursor_ts"],
        "cursor_to": res.get("cursor_to"),
        "bars_written": int(res.get("bars_written") or 0),
        "cont": bool(res.get("continue")),
    }


def _run_rollup(conn, task: dict, cfg: RunnerConfig, run_id, started_at, claim_next: bool) -> dict:
    """rollup: catch up one symbol and timeframe, finished and logged in the same
    statement (agg_run_rollup); with claim_next that statement also claims the
    runner's next task ("claimed": [task], or [] when nothing is due). A run that
    redid late buckets also redid those of the levels above it ("cascaded", their
    bars per timeframe)."""
    claimed = None
    if claim_next:
        res, claimed = queries.agg_run_rollup_and_claim(
            conn,
            task,
            run_id,
            started_at,
            cfg.max_windows,
            cfg.env,
            cfg.lease_seconds,
            cfg.batch_size,
        )
    else:
        res = queries.agg_run_rollup(conn, task, run_id, started_at, cfg.max_windows)
    fin = _rollup_result(task, res or {})
    fin["claimed"] = claimed
    return fin


def _rollup_result(task: dict, res: dict) -> dict:
    """agg_finish's arguments from a rollup run's result (its own or its batch's), and
    the bars it cascaded to the levels above ("cascaded_bars")."""
    fin = _step_result(
        task,
        res,
        "catchup",
        ("windows_processed", "bars_written", "partial_bars", "dirty_ranges"),
    )
    cascaded = res.get("cascaded") or {}
    if "error" in cascaded:
        # the run stands; the levels above redo their buckets in their own runs
        log.warning("levels above left to their own runs: %s", cascaded["error"])
    elif cascaded:
        log.info(
            "cascaded: %s",
            " ".join(f"{tf}={c['bars_written']}/{c['bars_deleted']}" for tf, c in cascaded.items()),
        )
        fin["cascaded_bars"] = {tf: int(c["bars_written"]) for tf, c in cascaded.items()}
    return fin


def _run_indicators(conn, task: dict, cfg: RunnerConfig) -> dict:
    """indicators: compute the technical indicators of the next bars of one symbol and
    timeframe (from the first corrected bar when a correction rewound it); --max-windows
    caps the bars per run."""
    res = queries.indicators_step(
        conn, task["canonical_symbol"], task["timeframe"], task["cursor_ts"], cfg.max_windows
    )
    return _indicators_result(task, res or {})


def _indicators_result(task: dict, res: dict) -> dict:
    """agg_finish's arguments from an indicators run's result (its own or its batch's)."""
    return _step_result(task, res, "indicators", ("bars_computed", "bars_written", "rewound_to"))


def _run_gap_scan(conn, task: dict, cfg: RunnerConfig) -> dict:
    """gap_scan (live window) and gap_scan_history: reconcile the gap ledger; the
    cursor records how far the scan looked."""
    scope = "live" if task["task_kind"] == "gap_scan" else "history"
    res = queries.gap_scan_run(conn, task["canonical_symbol"], scope) or {}
    if res.get("success") is False:
        raise TickaggError(res.get("error") or f"gap scan failed: {res}")
    log.info(
        "gap scan %s: [%s, %s) gaps=%s missing=%s new=%s filled=%s partly_filled=%s",
        scope,
        res.get("window_from"),
        res.get("window_to"),
        res.get("gaps_found"),
        res.get("missing_minutes"),
        res.get("gaps_new"),
        res.get("gaps_filled"),
        res.get("gaps_partly_filled"),
    )
    return {
        "cursor_from": task["cursor_ts"],
        "cursor_to": res.get("scan_end"),
        "bars_written": 0,
        "cont": False,
    }


def _run_export(conn, task: dict, cfg: RunnerConfig) -> dict:
    """export: send the symbol's bar changes above its change_no cursor to ClickHouse,
    then move the cursor (fenced) in this transaction; see runner/clickhouse.py."""
    from . import clickhouse

    if not cfg.clickhouse_url:
        raise TransientDatabaseError(
            "export task but no ClickHouse target: run with --clickhouse-url"
            " (or TICKAGG_CLICKHOUSE_URL)"
        )
    try:
        client = clickhouse.connect(cfg.clickhouse_url, cfg.clickhouse_database)
    except clickhouse.ClickHouseError as exc:
        raise TransientDatabaseError(str(exc)) from exc
    res = clickhouse.export_step(
        conn, client, task["canonical_symbol"], task["claim_token"], cfg.export_batch_size
    )
    log.info(
        "export: rows=%s change_no %s -> %s continue=%s",
        res["rows"],
        res["cursor_from"],
        res["cursor_to"],
        res["continue"],
    )
    return {
        "cursor_from": task["cursor_ts"],
        "cursor_to": dt.datetime.now(dt.UTC),
        "bars_written": res["rows"],
        "cont": res["continue"],
    }


def _run_ticks_1m(conn, task: dict, cfg: RunnerConfig) -> dict:
    """ticks_1m: closed minutes (and minutes late ticks dirtied) to 1-minute bars."""
    res = queries.ticks_aggregate_minutes(
        conn, task["canonical_symbol"], task["cursor_ts"], cfg.max_windows
    )
    return _ticks_1m_result(task, res or {})


def _ticks_1m_result(task: dict, res: dict) -> dict:
    """agg_finish's arguments from a ticks_1m run's result (its own or its batch's)."""
    counts = ("windows_processed", "bars_written", "dirty_ranges")
    return _step_result(task, res, "ticks_1m", counts)


def _run_ticks_retention(conn, task: dict, cfg: RunnerConfig) -> dict:
    """ticks_retention: partitions ahead, old ones dropped; the cursor records the run."""
    res = queries.ticks_retention_run(conn) or {}
    log.info(
        "ticks retention: created=%s dropped=%s held=%s%s",
        res.get("partitions_created"),
        res.get("partitions_dropped"),
        res.get("partitions_held"),
        f" skipped ({res['skipped']})" if res.get("skipped") else "",
    )
    return {
        "cursor_from": task["cursor_ts"],
        "cursor_to": dt.datetime.now(dt.UTC),
        "bars_written": 0,
        "cont": False,
    }


# task_kind -> fn(conn, task, config): runs inside the transaction that execute()
# opens and finishes with agg_finish and the run log
HANDLERS: dict[str, Callable[..., dict]] = {
    "gap_scan": _run_gap_scan,
    "gap_scan_history": _run_gap_scan,
    "export": _run_export,
    "ticks_1m": _run_ticks_1m,
    "ticks_retention": _run_ticks_retention,
    "indicators": _run_indicators,
}

# task_kind -> fn(conn, task, config, run_id, started_at, claim_next): runs,
# finishes and logs the task in one statement (the commonest task, so the fewest
# round trips): in autocommit on the runner's own pool, with claim_next claiming the
# next task in it too (returned as "claimed"); inside execute()'s transaction on a
# pool passed in
SELF_FINISHING_HANDLERS: dict[str, Callable[..., dict]] = {
    "rollup": _run_rollup,
}


class Runner:
    def __init__(self, cfg: RunnerConfig, pool: ConnectionPool | None = None, metrics=None):
        self.cfg = cfg
        # optional runner.metrics.Metrics: observe_task(kind, timeframe, outcome, seconds,
        # bars) and bars_written (per timeframe, cascaded levels included)
        self.metrics = metrics
        self._own_pool = pool is None
        self.pool = pool
        self.stop_event = threading.Event()
        # why the runner stopped first ("idle", a signal's name, ...)
        self.stop_reason: str | None = None
        self._cond = threading.Condition()
        self._wake_seq = 0
        # A run's own NOTIFY tells its worker nothing: the claim after the run (or
        # in its statement) sees what the run committed. So a wake-up from a session
        # a worker last ran a task on is counted for that worker (_own_wakes) and
        # wakes only the others; without that, each run cost an empty claim.
        self._session_worker: dict[int, int] = {}
        self._own_wakes: dict[int, int] = {}
        self._worker_no = threading.local()
        self._busy = 0
        self._idle_exit = False
        self.stats = RunStats()
        self._stats_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # one worker waits out an outage (_ride_out_outage), the others wait for it
        self._outage_lock = threading.Lock()
        # failures of runs the outage interrupted, recorded once it is over:
        # (task, exception, run_id, started_at)
        self._unrecorded_failures: list[tuple] = []

    # -- wake-ups -------------------------------------------------------------
    def wake(self, sender_pid: int | None = None) -> None:
        with self._cond:
            self._wake_seq += 1
            worker_no = self._session_worker.get(sender_pid)
            if worker_no is not None:
                self._own_wakes[worker_no] = self._own_wakes.get(worker_no, 0) + 1
            self._cond.notify_all()

    def _wakes_for(self, worker_no: int) -> int:
        """Wake-ups so far that may be news to worker_no (call holding _cond)."""
        return self._wake_seq - self._own_wakes.get(worker_no, 0)

    def _note_run_session(self, conn) -> None:
        """The session a worker runs a task on: its NOTIFYs are that worker's own."""
        worker_no = getattr(self._worker_no, "value", None)
        if worker_no is not None:
            with self._cond:
                self._session_worker[conn.info.backend_pid] = worker_no

    def request_stop(self, reason: str = "") -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            log.info(
                "stopping%s: no new claims; current tasks finish", f" ({reason})" if reason else ""
            )
        self.stop_event.set()
        self.wake()

    # -- listener ---------------------------------------------------------------
    def _listen(self) -> None:
        outage = OutageReport("listener connection")
        backoff = OUTAGE_BACKOFF_SECONDS[0]
        while not self.stop_event.is_set():
            try:
                with db.connect(self.cfg.dsn, connect_timeout=PROBE_TIMEOUT_SECONDS) as conn:
                    conn.execute(queries.LISTEN_WORK)
                    log.debug("listening on %s", WORK_CHANNEL)
                    outage.recovered()
                    backoff = OUTAGE_BACKOFF_SECONDS[0]
                    self.wake()  # we may have missed notifications meanwhile
                    # a short wait: shutdown joins this thread, and `run --until-idle`
                    # spent up to a second of its run waiting here
                    while not self.stop_event.is_set():
                        for notify in conn.notifies(timeout=0.1, stop_after=1):
                            self.wake(notify.pid)
            except Exception as exc:  # noqa: BLE001 - reconnect on anything
                if self.stop_event.is_set():
                    break
                outage.failed(exc)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_SECONDS[1])

    # -- workers ----------------------------------------------------------------
    def _sleep_seconds(self) -> float:
        try:
            with self.pool.connection() as conn:
                nxt = queries.next_due_at(conn, self.cfg.env)
        except DatabaseUnavailable as exc:
            self._ride_out_outage(exc)
            return 0  # back: claim at once
        except TickaggError as exc:
            log.warning("agg_next_due_at failed: %s", exc)
            return min(5.0, self.cfg.poll_max)
        if nxt is None:
            return self.cfg.poll_max
        delta = (nxt - dt.datetime.now(dt.UTC)).total_seconds()
        return max(0.05, min(delta, self.cfg.poll_max))

    def _claim(self) -> dict | None:
        """One task, never a batch."""
        with self.pool.connection() as conn:
            rows = queries.claim_batch(conn, self.cfg.env, self.cfg.lease_seconds, 1)
        return rows[0] if rows else None

    def _claim_rows(self) -> list[dict]:
        """The head of the queue, or a batch of rollup or indicators tasks of one timeframe."""
        with self.pool.connection() as conn:
            return queries.claim_batch(
                conn, self.cfg.env, self.cfg.lease_seconds, self.cfg.batch_size
            )

    def _run_claimed(self, claimed: list[dict]) -> list[dict] | None:
        """Run what a claim returned: one task (which may claim the next), or a batch."""
        if len(claimed) > 1:
            return self.execute_batch(claimed)
        return self.execute(claimed[0], claim_next=True)

    def run_due(self) -> list[dict]:
        """Claim and execute due tasks in the calling thread until none is due, with
        no listener and no sleeping (benchmarks time the runner's own path with
        it). Returns the tasks run, in order."""
        self._ensure_pool()
        tasks = []
        claimed = self._claim_rows()
        while claimed:
            tasks.extend(claimed)
            claimed = self._run_claimed(claimed)
            if claimed is None:
                claimed = self._claim_rows()
        return tasks

    def _nothing_due(self) -> bool:
        try:
            with self.pool.connection() as conn:
                return not queries.get_due_tasks(conn, self.cfg.env, 1, None)
        except DatabaseUnavailable as exc:
            self._ride_out_outage(exc)
            return False

    def _ride_out_outage(self, exc: DatabaseUnavailable) -> None:
        """Wait, without a log line per attempt, until the database can be connected
        to again (or the runner stops); then check the pool (its sessions died with
        the server) and record the failures of the runs the outage cut short. A
        task whose failure cannot be recorded stays claimed until its lease ends.
        One worker waits; the others wait for it and find the database back. With
        --until-idle, raises DatabaseUnavailable once it has been unavailable for
        connect_timeout."""
        with self._outage_lock:
            outage = OutageReport("database")
            backoff = OUTAGE_BACKOFF_SECONDS[0]
            while not self.stop_event.is_set():
                try:
                    db.connect(self.cfg.dsn, connect_timeout=PROBE_TIMEOUT_SECONDS).close()
                    break
                except Exception as probe_exc:  # noqa: BLE001 - any failure: still away
                    exc = probe_exc
                down = outage.failed(exc)
                wait = backoff
                if self.cfg.until_idle:
                    if down >= self.cfg.connect_timeout:
                        self.request_stop("database unavailable")
                        raise DatabaseUnavailable(
                            f"database unavailable for {down:.0f}s, giving up "
                            f"(--connect-timeout {self.cfg.connect_timeout:g}): {_reason(exc)}"
                        )
                    wait = min(wait, self.cfg.connect_timeout - down)
                self.stop_event.wait(wait)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_SECONDS[1])
            if self.stop_event.is_set():
                return
            outage.recovered()
            if self.pool is not None:
                self.pool.check()
                with self._stats_lock:
                    unrecorded, self._unrecorded_failures = self._unrecorded_failures, []
                for task, failure, run_id, started_at in unrecorded:
                    self._record_failure(task, "transient", failure, run_id, started_at)
        self.wake()

    def _worker(self, worker_no: int) -> None:
        # What the statement that ran the previous task claimed: [task] or a batch,
        # [] when nothing was due, None when it claimed nothing (then this loop claims). A
        # task held here stays counted busy, so no idle check elsewhere ends the run.
        claimed: list[dict] | None = None
        self._worker_no.value = worker_no
        with log_context(worker=worker_no):
            while not self.stop_event.is_set() or claimed:
                with self._cond:
                    seq = self._wakes_for(worker_no)
                if claimed is None:
                    claimed = self._claim_counted()
                if claimed:
                    tasks, claimed = claimed, None
                    try:
                        if self.stop_event.is_set():
                            for task in tasks:
                                self._release(task)
                        else:
                            claimed = self._run_claimed(tasks)
                    finally:
                        with self._cond:
                            if not claimed:
                                self._busy -= 1
                            # a wake-up during the run may be for work committed after
                            # its claim: then the wait below returns at once
                            woken = self._wakes_for(worker_no) != seq
                            self._wake_seq += 1
                            self._own_wakes[worker_no] = self._own_wakes.get(worker_no, 0) + 1
                            self._cond.notify_all()
                            if not woken:
                                seq = self._wakes_for(worker_no)
                    if claimed != [] or self.stop_event.is_set():
                        continue
                claimed = None
                # nothing claimed
                if self.cfg.until_idle:
                    with self._cond:
                        others_busy = self._busy > 0
                    if not others_busy and self._nothing_due():
                        with self._cond:
                            if self._busy == 0:
                                self._idle_exit = True
                                self.request_stop("idle")
                                return
                timeout = self._sleep_seconds()
                self._wait(worker_no, seq, timeout)

    def _claim_counted(self) -> list[dict]:
        """A worker's own claim, counted busy from before it is sent, so an idle
        check in another worker never sees nobody busy while a task is being
        claimed (and then released unrun when that check stops the runner)."""
        with self._cond:
            self._busy += 1
        claimed: list[dict] = []
        try:
            if not self.stop_event.is_set():
                claimed = self._claim_rows()
        except DatabaseUnavailable as exc:
            self._ride_out_outage(exc)  # then claim again: the worker wakes at once
        except TickaggError as exc:
            log.warning("claim failed: %s", exc)
            if not isinstance(exc, TransientDatabaseError):
                raise
        finally:
            if not claimed:
                with self._cond:
                    self._busy -= 1
        return claimed

    def _wait(self, worker_no: int, seq: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._wakes_for(worker_no) != seq or self.stop_event.is_set(),
                timeout=timeout,
            )

    def _release(self, task: dict) -> None:
        with log_context(
            symbol=task["canonical_symbol"], timeframe=task["timeframe"], kind=task["task_kind"]
        ):
            try:
                with wrap_exceptions(), self.pool.connection() as conn, conn.transaction():
                    queries.agg_finish(conn, task, "release")
                log.info("released claimed task (shutting down)")
                with self._stats_lock:
                    self.stats.released += 1
            except TickaggError as exc:
                log.warning("release failed (lease will expire): %s", exc)

    def _ensure_pool(self) -> None:
        """A pool of the runner's own: its sessions carry the statement timeout, so a
        task that is one statement (a rollup run) needs no transaction around it."""
        if self.pool is None:
            self.pool = db.make_pool(
                self.cfg.dsn,
                max_size=self.cfg.workers + 1,
                statement_timeout=self.cfg.statement_timeout,
                timeout=self.cfg.pool_timeout,
            )

    def _run_and_finish(self, conn, task: dict, run_id, started_at, claim_next: bool) -> dict:
        """The task's work, agg_finish and its run log row, in the caller's transaction
        or for a self-finishing kind as one statement (which with claim_next claims
        the next task too: "claimed")."""
        kind = task["task_kind"]
        if kind in SELF_FINISHING_HANDLERS:
            return SELF_FINISHING_HANDLERS[kind](
                conn, task, self.cfg, run_id, started_at, claim_next
            )
        handler = HANDLERS.get(kind)
        if handler is None:
            known = sorted({*HANDLERS, *SELF_FINISHING_HANDLERS})
            raise UnknownTaskKind(
                f"runner has no handler for task_kind {kind!r} (known: {', '.join(known)})"
            )
        fin = handler(conn, task, self.cfg)
        queries.agg_finish(conn, task, "success", **fin)
        queries.ops_log_run(
            conn,
            run_id,
            task,
            started_at,
            "success",
            bars_written=fin.get("bars_written", 0),
            cursor_from=fin.get("cursor_from"),
            cursor_to=fin.get("cursor_to"),
        )
        return fin

    def execute(self, task: dict, claim_next: bool = False) -> list[dict] | None:
        """Run one claimed task: work + agg_finish('success') in ONE
        transaction; on failure roll back and record the outcome. Every
        outcome gets an ops_runlog row under the run id the log lines carry.
        With claim_next, a run that is one statement (a rollup on the runner's own
        pool) also claims the next due task: returns what it claimed ([task], or []
        when nothing was due; the caller runs or releases the task), or None when
        nothing was claimed (another kind, or the run failed)."""
        run_id = uuid.uuid4()
        kind = task["task_kind"]
        with log_context(
            run_id=str(run_id),
            symbol=task["canonical_symbol"],
            timeframe=task["timeframe"],
            kind=kind,
        ):
            t0 = time.monotonic()
            started_at = dt.datetime.now(dt.UTC)
            with self._stats_lock:
                self.stats.tasks_run += 1
            try:
                with self.pool.connection() as conn:
                    self._note_run_session(conn)
                    if kind in SELF_FINISHING_HANDLERS and self._own_pool:
                        # one statement; the pool's sessions carry the statement timeout
                        fin = self._run_and_finish(conn, task, run_id, started_at, claim_next)
                    else:
                        with wrap_exceptions(), conn.transaction():
                            if not self._own_pool:  # the own pool's sessions carry it
                                queries.set_statement_timeout(conn, self.cfg.statement_timeout)
                            fin = self._run_and_finish(conn, task, run_id, started_at, False)
                cascaded = fin.pop("cascaded_bars", {})
                claimed = fin.pop("claimed", None)
            except LeaseLost as exc:
                with self._stats_lock:
                    self.stats.leases_lost += 1
                log.warning("lease lost, work rolled back: %s", exc)
                self._log_run(run_id, task, started_at, "lease_lost", error=str(exc))
                self._observe(task, "lease_lost", time.monotonic() - t0, 0)
                return None
            except Exception as exc:  # noqa: BLE001 - classified below
                outcome = self._fail(task, exc, run_id, started_at)
                self._observe(task, outcome, time.monotonic() - t0, 0)
                return None
            try:
                self._record_success(task, fin, cascaded, time.monotonic() - t0)
            except BaseException:
                for claimed_task in claimed or ():
                    self._release(claimed_task)  # not left running until its lease ends
                raise
            return claimed

    def execute_batch(self, tasks: list[dict]) -> None:
        """Run a claimed batch of rollup, indicators or ticks_1m tasks of one timeframe
        in one statement (agg_run_rollup_batch / agg_run_indicators_batch /
        agg_run_ticks_batch): each task's bars
        or values, cursor, finish and run log row commit together with the others'. A
        task whose lease was taken over is skipped by the statement (its work left to
        its new holder). If the statement fails, nothing of it stays, and each task
        runs on its own, so one bad task fails alone. Claims nothing next (returns
        None: the caller claims)."""
        run_ids = [uuid.uuid4() for _ in tasks]
        t0 = time.monotonic()
        started_at = dt.datetime.now(dt.UTC)
        kind = tasks[0]["task_kind"]
        with log_context(kind=kind, timeframe=tasks[0]["timeframe"]):
            try:
                with self.pool.connection() as conn:
                    self._note_run_session(conn)
                    if self._own_pool:
                        # one statement; the pool's sessions carry the statement timeout
                        rows = queries.agg_run_batch(
                            conn, tasks, run_ids, started_at, self.cfg.max_windows
                        )
                    else:
                        with wrap_exceptions(), conn.transaction():
                            queries.set_statement_timeout(conn, self.cfg.statement_timeout)
                            rows = queries.agg_run_batch(
                                conn, tasks, run_ids, started_at, self.cfg.max_windows
                            )
            except Exception as exc:  # noqa: BLE001 - each task then runs (and fails) alone
                log.warning("batch of %d failed, running its tasks one by one: %s", len(tasks), exc)
                if isinstance(exc, TransientDatabaseError):
                    self.pool.check()
                for task in tasks:
                    self.execute(task)
                return None
            elapsed = time.monotonic() - t0
            log.info("batch of %d done in %.3fs", len(tasks), elapsed)
            # per task: its share of the statement's time
            for task, run_id, row in zip(tasks, run_ids, rows, strict=True):
                with log_context(run_id=str(run_id), symbol=task["canonical_symbol"]):
                    with self._stats_lock:
                        self.stats.tasks_run += 1
                    if row["outcome"] == "lease_lost":
                        with self._stats_lock:
                            self.stats.leases_lost += 1
                        log.warning("lease lost: skipped in its batch, nothing written")
                        self._observe(task, "lease_lost", elapsed / len(tasks), 0)
                        continue
                    if kind == "rollup":
                        fin = _rollup_result(task, row["result"])
                        cascaded = fin.pop("cascaded_bars", {})
                    elif kind == "ticks_1m":
                        fin, cascaded = _ticks_1m_result(task, row["result"]), {}
                    else:
                        fin, cascaded = _indicators_result(task, row["result"]), {}
                    self._record_success(task, fin, cascaded, elapsed / len(tasks))
        return None

    def _record_success(self, task: dict, fin: dict, cascaded: dict, elapsed: float) -> None:
        """Metrics, stats and the log line of a successful run."""
        self._observe(task, "success", elapsed, fin.get("bars_written", 0))
        if self.metrics is not None:
            for timeframe, bars in cascaded.items():
                self.metrics.bars_written.labels(timeframe=timeframe).inc(bars)
        with self._stats_lock:
            self.stats.tasks_succeeded += 1
            self.stats.bars_written += fin.get("bars_written", 0) + sum(cascaded.values())
            k = self.stats.by_kind.setdefault(task["task_kind"], {"runs": 0, "bars": 0})
            k["runs"] += 1
            k["bars"] += fin.get("bars_written", 0)
        log.info(
            "task done in %.3fs: bars=%s cursor %s -> %s continue=%s",
            elapsed,
            fin.get("bars_written"),
            fin.get("cursor_from"),
            fin.get("cursor_to"),
            fin.get("cont"),
        )

    def _fail(self, task: dict, exc: BaseException, run_id=None, started_at=None) -> str:
        outcome = "transient" if isinstance(exc, TransientDatabaseError) else "hard"
        with self._stats_lock:
            self.stats.tasks_failed += 1
        if isinstance(exc, DatabaseUnavailable):
            log.warning("run cut short by the database going away: %s", _reason(exc))
        else:
            log.error(
                "task failed (%s): %s", outcome, exc, exc_info=not isinstance(exc, TickaggError)
            )
        if outcome == "transient":
            # a restarted server leaves every pooled session dead, and connections in
            # recent use are handed out unchecked (db.CHECK_AFTER_IDLE_SECONDS)
            self.pool.check()
        self._record_failure(task, outcome, exc, run_id, started_at)
        return outcome

    def _record_failure(self, task: dict, outcome: str, exc: BaseException, run_id, started_at):
        """agg_finish with the failure and its run log row; while the database is
        unavailable, kept for _ride_out_outage to record once it is back (a short
        wait for a connection: the worker goes on to notice the outage). A deadlock
        or serialization failure (any other transient error) is retried in place
        after each of RECORD_RETRY_SECONDS: unrecorded, the task would stay leased,
        not retried, for its whole lease."""
        for retry_in in (*RECORD_RETRY_SECONDS, None):
            try:
                timeout = PROBE_TIMEOUT_SECONDS if isinstance(exc, DatabaseUnavailable) else None
                with (
                    wrap_exceptions(),
                    self.pool.connection(timeout=timeout) as conn,
                    conn.transaction(),
                ):
                    queries.agg_finish(conn, task, outcome, error=str(exc)[:2000])
                    if run_id is not None:
                        queries.ops_log_run(
                            conn, run_id, task, started_at, outcome, error=str(exc)[:2000]
                        )
                return
            except DatabaseUnavailable:
                log.warning("failure of the run recorded once the database is back")
                with self._stats_lock:
                    self._unrecorded_failures.append((task, exc, run_id, started_at))
                return
            except LeaseLost as exc2:
                log.warning("lease lost while recording failure: %s", exc2)
                if run_id is not None:
                    self._log_run(run_id, task, started_at, "lease_lost", error=str(exc)[:2000])
                return
            except TransientDatabaseError as exc2:
                if retry_in is None:
                    log.error("could not record failure (lease will expire): %s", exc2)
                    return
                log.warning("recording the failure met %s; again in %.1fs", _reason(exc2), retry_in)
                time.sleep(retry_in)
            except TickaggError as exc2:
                log.error("could not record failure (lease will expire): %s", exc2)
                return

    def _log_run(self, run_id, task: dict, started_at, outcome: str, error: str) -> None:
        """A run log row in its own transaction (when no task transaction can carry it)."""
        try:
            with wrap_exceptions(), self.pool.connection() as conn, conn.transaction():
                queries.ops_log_run(conn, run_id, task, started_at, outcome, error=error[:2000])
        except TickaggError as exc:
            log.warning("could not write the run log: %s", exc)

    def _observe(self, task: dict, outcome: str, seconds: float, bars: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_task(
                task["task_kind"], task["timeframe"], outcome, seconds, bars or 0
            )

    # -- lifecycle --------------------------------------------------------------
    def run(self, install_signals: bool = True) -> RunStats:
        cfg = self.cfg
        if cfg.statement_timeout >= cfg.lease_seconds:
            log.info(
                "statement timeout (%ss) >= lease (%ss): a long task may "
                "lose its lease; its work is then rolled back",
                cfg.statement_timeout,
                cfg.lease_seconds,
            )
        old = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(
                    sig, lambda s, f: self.request_stop(signal.Signals(s).name)
                )
        errors: list[BaseException] = []
        try:
            # a runner started before its database waits for it like for any outage
            while self.pool is None and not self.stop_event.is_set():
                try:
                    self._ensure_pool()
                except DatabaseUnavailable as exc:
                    self._ride_out_outage(exc)
            if self.pool is not None:
                self._run_threads(errors)
        finally:
            self.stop_event.set()
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if self._own_pool and self.pool is not None:
                self.pool.close()
                self.pool = None
        log.info("runner stopped: %s", dataclasses.asdict(self.stats))
        if errors:
            raise errors[0]
        return self.stats

    def _run_threads(self, errors: list[BaseException]) -> None:
        """The listener and the workers, until the workers end; what a thread died of
        goes to errors."""
        cfg = self.cfg
        log.info(
            "runner starting: env=%s workers=%s lease=%ss timeout=%ss%s",
            cfg.env,
            cfg.workers,
            cfg.lease_seconds,
            cfg.statement_timeout,
            " until-idle" if cfg.until_idle else "",
        )

        def guarded(fn, *args):
            def inner():
                try:
                    fn(*args)
                except DatabaseUnavailable as exc:  # --until-idle gave up: said once, by the CLI
                    errors.append(exc)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                    log.exception("thread crashed: %s", exc)
                    self.request_stop("thread crashed")

            return inner

        listener = threading.Thread(target=guarded(self._listen), name="tk-listen", daemon=True)
        listener.start()
        self._threads = [
            threading.Thread(target=guarded(self._worker, i), name=f"tk-worker-{i}")
            for i in range(cfg.workers)
        ]
        for t in self._threads:
            t.start()
        try:
            for t in self._threads:
                while t.is_alive():
                    t.join(0.2)  # short joins keep the main thread signal-responsive
        finally:
            self.stop_event.set()
            listener.join(3)


def run(
    cfg: RunnerConfig,
    pool: ConnectionPool | None = None,
    install_signals: bool = True,
    metrics=None,
) -> RunStats:
    return Runner(cfg, pool, metrics=metrics).run(install_signals=install_signals)
