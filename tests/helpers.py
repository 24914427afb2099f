"""Small shared helpers for the end-to-end tests: load bars, drive tasks the way
the runner does, read derived bars back, run the real CLI."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psycopg
from oracle import CONTENT_FIELDS, Bar1m, source_rank
from psycopg import sql
from psycopg.rows import dict_row

from runner import queries

ROOT = Path(__file__).resolve().parents[1]
TICKAGG = ROOT / ".venv" / "bin" / "tickagg"
UTC = dt.UTC


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def register(conn, symbol: str, calendar: str, *, mandatory: bool = False) -> None:
    conn.execute(
        "SELECT tickagg.register_symbol(%s, %s, p_is_mandatory => %s)",
        (symbol, calendar, mandatory),
    )


def sync(conn, start: dt.datetime) -> dict:
    return conn.execute(
        "SELECT tickagg.sync_agg_state_from_registry('prod', %s) AS r", (start,)
    ).fetchone()["r"]


def insert_bars(conn, symbol: str, bars: Mapping[dt.datetime, Bar1m]) -> None:
    """Direct superuser load into data_bars (one COPY = one statement trigger)."""
    with conn.cursor().copy(
        "COPY tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume, vwap,"
        " trade_count, source, source_rank) FROM STDIN"
    ) as cp:
        for ts, b in bars.items():
            cp.write_row(
                (
                    symbol,
                    ts,
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume,
                    b.vwap,
                    b.trade_count,
                    b.source,
                    source_rank(b.source),
                )
            )


def ingest(
    conn, rows: Iterable[tuple[str, dt.datetime, Bar1m]], file_name: str = "test.csv"
) -> dict:
    """The real ingest path: stage text rows in the session's temp table, then
    tickagg.ingest_staged_bars (rank rules, rejects)."""
    with conn.transaction():
        conn.execute(queries.CREATE_BARS_STAGE)
        with conn.cursor().copy(queries.COPY_BARS_STAGE) as cp:
            for i, (sym, ts, b) in enumerate(rows, start=2):
                cp.write_row(
                    (i, sym, ts.isoformat(), repr(b.open), repr(b.high), repr(b.low), repr(b.close),
                     repr(b.volume), b.source,
                     None if b.vwap is None else repr(b.vwap),
                     None if b.trade_count is None else str(b.trade_count))
                )  # fmt: skip
        return conn.execute(
            "SELECT tickagg.ingest_staged_bars(%s, 'polygon_historical') AS r", (file_name,)
        ).fetchone()["r"]


def pending_invalidations(conn) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM tickagg.agg_invalidations AS i"
        " JOIN tickagg.data_agg_state AS s ON s.canonical_symbol = i.canonical_symbol"
        "  AND s.timeframe = i.timeframe AND s.task_kind = 'rollup' AND s.enabled"
    ).fetchone()["n"]


def drive(
    dsn: str, *, max_windows: int | None = None, split: bool = False, max_claims: int = 20000
) -> dict:
    """Run tasks like the runner until a claim at now() returns nothing and no
    invalidation is pending. Claim in its own transaction; then catchup and
    agg_finish in one transaction (split=True: each in its own transaction).
    Returns totals."""
    with connect(dsn) as conn:
        return drive_on(conn, max_windows=max_windows, split=split, max_claims=max_claims)


def drive_on(
    conn, *, max_windows: int | None = None, split: bool = False, max_claims: int = 20000
) -> dict:
    """drive() in a given session (its cached plans are the ones used)."""
    totals = {"claims": 0, "bars_written": 0, "bars_deleted": 0}
    while True:
        tasks = conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
        ).fetchall()
        if not tasks:
            left = pending_invalidations(conn)
            assert left == 0, f"nothing claimable but {left} invalidations pending (stall)"
            return totals
        for t in tasks:
            totals["claims"] += 1
            assert totals["claims"] < max_claims, "runaway: tasks never settle"
            run_claimed(conn, t, totals, max_windows=max_windows, split=split)


def run_claimed(
    conn, t: Mapping, totals: dict, *, max_windows: int | None = None, split: bool = False
) -> None:
    """Run one claimed task the way the runner does (see drive) and add to totals."""
    if t["task_kind"] in ("gap_scan", "gap_scan_history"):
        _gap_scan(conn, t)
        return
    if t["task_kind"] == "ticks_retention":
        _ticks_retention(conn, t)
        return
    if t["task_kind"] == "indicators":
        indicators_run(conn, t, max_windows)
        return
    if t["task_kind"] == "ticks_1m":
        query = "SELECT tickagg.ticks_aggregate_minutes(%s, %s, %s) AS r"
        args = (t["canonical_symbol"], t["cursor_ts"], max_windows)
    else:
        query = "SELECT tickagg.catchup_aggregation_range(%s, %s, %s, %s) AS r"
        args = (t["canonical_symbol"], t["timeframe"], t["cursor_ts"], max_windows)
    with conn.transaction():
        res = conn.execute(query, args).fetchone()["r"]
        assert res["success"] is True, res
        if not split:
            _finish(conn, t, res)
    if split:
        with conn.transaction():
            _finish(conn, t, res)
    _count_run(totals, res)


def _count_run(totals: dict, res: Mapping) -> None:
    """Add a run's bars to the totals; a rollup run also redid the late buckets of
    the levels above it ("cascaded"), which must not have failed."""
    cascaded = res.get("cascaded") or {}
    assert "error" not in cascaded, cascaded
    levels = [res, *cascaded.values()]
    totals["bars_written"] += sum(int(r["bars_written"]) for r in levels)
    totals["bars_deleted"] += sum(int(r.get("bars_deleted") or 0) for r in levels)


def _gap_scan(conn, task: Mapping) -> dict:
    """What the runner does for a gap-scan task: scan, then finish at the scan end."""
    scope = "live" if task["task_kind"] == "gap_scan" else "history"
    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.gap_scan_run(%s, %s) AS r", (task["canonical_symbol"], scope)
        ).fetchone()["r"]
        assert res["success"] is True, res
        _finish(
            conn,
            task,
            {"cursor_from": task["cursor_ts"], "cursor_to": res["scan_end"],
             "bars_written": 0, "continue": False},
        )  # fmt: skip
    return res


def _ticks_retention(conn, task: Mapping) -> dict:
    """What the runner does for a ticks_retention task."""
    with conn.transaction():
        res = conn.execute("SELECT tickagg.ticks_retention_run() AS r").fetchone()["r"]
        assert res["success"] is True, res
        now = conn.execute("SELECT now() AS n").fetchone()["n"]
        _finish(
            conn,
            task,
            {"cursor_from": task["cursor_ts"], "cursor_to": now, "bars_written": 0,
             "continue": False},
        )  # fmt: skip


def indicators_run(conn, task: Mapping, max_bars: int | None = None) -> dict:
    """What the runner does for an indicators task: one step, finished in its transaction."""
    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.indicators_step(%s, %s, %s, %s) AS r",
            (task["canonical_symbol"], task["timeframe"], task["cursor_ts"], max_bars),
        ).fetchone()["r"]
        assert res["success"] is True, res
        _finish(conn, task, res)
    return res


def _finish(conn, task: Mapping, res: Mapping) -> None:
    conn.execute(
        "SELECT tickagg.agg_finish(%s, %s, %s, %s, 'success', %s::timestamptz, %s::timestamptz,"
        " NULL, %s, %s)",
        (
            task["canonical_symbol"],
            task["timeframe"],
            task["task_kind"],
            task["claim_token"],
            res["cursor_from"],
            res["cursor_to"],
            int(res["bars_written"]),
            bool(res["continue"]),
        ),
    )


def derived(conn, symbols: Iterable[str] | None = None, *, with_meta: bool = False) -> dict:
    """Live derived bars keyed (symbol, timeframe, ts_utc in UTC)."""
    rows = conn.execute(
        "SELECT * FROM tickagg.derived_data_bars WHERE deleted_at IS NULL"
        " AND (%(syms)s::text[] IS NULL OR canonical_symbol = ANY(%(syms)s))",
        {"syms": list(symbols) if symbols is not None else None},
    ).fetchall()
    out = {}
    for r in rows:
        key = (r["canonical_symbol"], r["timeframe"], r["ts_utc"].astimezone(UTC))
        bar = {f: r[f] for f in CONTENT_FIELDS}
        bar["bucket_end"] = bar["bucket_end"].astimezone(UTC)
        if with_meta:
            bar.update(
                derivation_version=r["derivation_version"],
                change_no=r["change_no"],
                updated_at=r["updated_at"],
            )
        out[key] = bar
    return out


def all_rows_meta(conn, symbol: str) -> dict:
    """Every derived row of a symbol (soft-deleted too) with its bookkeeping."""
    return {
        (r["timeframe"], r["ts_utc"]): (
            r["change_no"],
            r["updated_at"],
            r["derivation_version"],
            r["deleted_at"],
        )  # fmt: skip
        for r in conn.execute(
            "SELECT timeframe, ts_utc, change_no, updated_at, derivation_version, deleted_at"
            " FROM tickagg.derived_data_bars WHERE canonical_symbol = %s",
            (symbol,),
        )
    }


def tickagg_cmd(dsn: str, *args: str) -> list[str]:
    return [str(TICKAGG), "--dsn", dsn, *args]


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(dsn: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        tickagg_cmd(dsn, *args),
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cursors(conn) -> dict:
    return {
        (r["canonical_symbol"], r["timeframe"], r["task_kind"]): r["last_agg_bar_ts_utc"]
        for r in conn.execute(
            "SELECT canonical_symbol, timeframe, task_kind, last_agg_bar_ts_utc"
            " FROM tickagg.data_agg_state"
        )
    }


def rollups_only(conn) -> None:
    """Disable every task that is not a rollup (gap scans...), for tests of rollups."""
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind <> 'rollup'")


def partial_drive(dsn: str, claims: int, *, max_windows: int | None = None) -> dict:
    """Run at most `claims` rollup tasks the way the runner does, one claim (limit 1)
    at a time, so cursors can stop anywhere mid catch-up. Returns totals."""
    totals = {"claims": 0, "bars_written": 0, "bars_deleted": 0}
    with connect(dsn) as conn:
        while totals["claims"] < claims:
            t = conn.execute(
                "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 300)"
            ).fetchone()
            if t is None:
                break
            assert t["task_kind"] == "rollup", f"partial_drive runs rollups only, claimed {t}"
            totals["claims"] += 1
            with conn.transaction():
                res = conn.execute(
                    "SELECT tickagg.catchup_aggregation_range(%s, %s, %s, %s) AS r",
                    (t["canonical_symbol"], t["timeframe"], t["cursor_ts"], max_windows),
                ).fetchone()["r"]
                assert res["success"] is True, res
                _finish(conn, t, res)
            _count_run(totals, res)
    return totals


def sigkill_runner_after(conn, cmd: list[str], seconds: float, last: Mapping) -> dict:
    """Start a runner (`cmd`, from tickagg_cmd), SIGKILL it `seconds` after it has
    connected and check that no task cursor moved back from `last`. Returns the
    cursors now. (Counting from its connection, not its start: on a loaded machine
    Python's start-up alone took the whole window and the runner never worked.)"""
    earlier = runner_sessions(conn)
    p = subprocess.Popen(
        cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and runner_sessions(conn) <= earlier:
        time.sleep(0.02)
    time.sleep(seconds)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    now = cursors(conn)
    back = {k: (last[k], v) for k, v in now.items() if k in last and v < last[k]}
    assert not back, f"cursors moved back: {back}"
    return now


def runner_sessions(conn) -> set[int]:
    """Backend pids of the tickagg sessions (application_name 'tickagg') open now."""
    return {
        r["pid"]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'tickagg' AND datname = current_database()"
        )
    }


def run_until_idle_after_kills(dsn: str, conn, *run_args: str, attempts: int = 5) -> None:
    """`tickagg run --until-idle` after runners were SIGKILLed: a killed runner's
    tasks stay leased until their leases run out, so run again past the latest
    lease until nothing is running and no invalidation is pending."""
    for _ in range(attempts):
        p = run_cli(dsn, "run", "--until-idle", "--workers", "1", "--lease-seconds", "2", *run_args)
        # exit 5: work left, here tasks a killed runner's session claimed after the
        # kill (its statement still ran); no run may have failed
        assert p.returncode in (0, 5), p.stderr[-3000:]
        assert "runs failed" not in p.stderr, p.stderr[-3000:]
        left = conn.execute(
            "SELECT max(lease_expires_at) AS until, count(*) AS n FROM tickagg.data_agg_state"
            " WHERE status = 'running'"
        ).fetchone()
        if left["n"] == 0 and pending_invalidations(conn) == 0:
            return
        # wait for the killed runner's lease to expire (not an assertion on time)
        now = conn.execute("SELECT now() AS n").fetchone()["n"]
        time.sleep(max(0.0, (left["until"] - now).total_seconds()) + 0.2)


def wait_until_blocked(conn, waiter_pid: int, blocker_pid: int, timeout: float = 30) -> None:
    """Poll until session waiter_pid waits on a lock session blocker_pid holds: a
    test of what happens while one session waits on another sets that state up
    for certain instead of sleeping and hoping."""
    deadline = time.monotonic() + timeout
    while (
        blocker_pid
        not in conn.execute("SELECT pg_blocking_pids(%s) AS pids", (waiter_pid,)).fetchone()["pids"]
    ):
        assert time.monotonic() < deadline, f"session {waiter_pid} never waited on {blocker_pid}"
        time.sleep(0.02)


def take_over_lease(conn, symbol: str, timeframe: str, kind: str):
    """As when a task's lease expired and another runner claimed it: a new token."""
    return conn.execute(
        "UPDATE tickagg.data_agg_state SET claim_token = gen_random_uuid()"
        " WHERE canonical_symbol = %s AND timeframe = %s AND task_kind = %s"
        " RETURNING claim_token",
        (symbol, timeframe, kind),
    ).fetchone()["claim_token"]


def run_batch(conn, function: str, timeframe: str, tasks: list[dict], run_ids: list) -> list[dict]:
    """Call a batch function (agg_run_rollup_batch, agg_run_indicators_batch) on
    claimed tasks, as the runner does; a row per task."""
    return conn.execute(
        sql.SQL("SELECT * FROM tickagg.{}(%s, %s, %s, %s, %s, now())").format(
            sql.Identifier(function)
        ),
        (
            timeframe,
            [t["canonical_symbol"] for t in tasks],
            [t["claim_token"] for t in tasks],
            [t["cursor_ts"] for t in tasks],
            run_ids,
        ),
    ).fetchall()
