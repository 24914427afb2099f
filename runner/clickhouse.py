"""ClickHouse: one client for the embedded engine and a server, DDL, export, verify.

`connect(url, database)` returns a clickhouse-connect client for
  chdb:///abs/path       the embedded engine (chdb) in that directory
  http(s)://host:8123    a ClickHouse server (user/password in the URL)
clickhouse-connect >= 1.12 opens chdb:// URLs itself. chdb holds an exclusive
lock on its directory: only one process may open a path at a time, and within
one process the engine is opened once and shared (this module caches it).

Values always travel as bound parameters ({name:Type}) or through insert();
the only identifier ever put into SQL text is the database name, validated.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from . import queries
from .errors import TickaggError

log = logging.getLogger(__name__)

# How long a one-shot export waits for transactions that were open when it started
# (they hold the export horizon back) before it stops short and says so.
ONE_SHOT_EXPORT_WAIT_SECONDS = 30.0

CLICKHOUSE_DIR = Path(__file__).resolve().parents[1] / "db" / "clickhouse"
DEFAULT_DATABASE = "tickagg"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Between the ClickHouse insert and the cursor commit, sleep this many seconds
# (tests use it to SIGKILL an exporter at exactly that point).
CRASH_HOOK_ENV = "TICKAGG_EXPORT_SLEEP_AFTER_INSERT"

AGG_COLUMNS = [
    "symbol",
    "timeframe",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "source",
    "quality_score",
    "source_candles",
    "expected_candles",
    "is_partial",
    "indicators",
    "is_deleted",
    "version",
    "created_at",
]


class ClickHouseError(TickaggError):
    """A ClickHouse target could not be opened or refused a statement."""


class ClickHouseLocked(ClickHouseError):
    """Another process has the embedded engine's directory open."""


_clients: dict[tuple[str, str], object] = {}
_clients_lock = threading.Lock()


def check_database_name(name: str) -> str:
    if not _DB_NAME.match(name or ""):
        raise ClickHouseError(
            f"invalid ClickHouse database name {name!r}: letters, digits and _ only"
        )
    return name


def chdb_path(url: str) -> Path | None:
    """The directory of a chdb:///path URL, None for server URLs."""
    if not url.startswith("chdb:"):
        return None
    rest = url[len("chdb:") :]
    if not rest.startswith("///"):
        raise ClickHouseError(f"use chdb:///absolute/path for the embedded engine, not {url!r}")
    return Path(rest[2:])


def _assert_unlocked(path: Path) -> None:
    """ClickHouse flock()s <path>/status while a process has the engine open."""
    status = path / "status"
    if not status.exists():
        return
    with open(status, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClickHouseLocked(
                f"the embedded ClickHouse at {path} is open in another process; only one process"
                " may open a chdb path (stop it, or point --clickhouse-url at a server)"
            ) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


def connect(url: str, database: str = DEFAULT_DATABASE):
    """A client for url with `database` created and selected (cached per process)."""
    import clickhouse_connect

    check_database_name(database)
    key = (url, database)
    with _clients_lock:
        if key in _clients:
            return _clients[key]
        path = chdb_path(url)
        try:
            if path is not None:
                # clients on one path share the process's engine; the lock check
                # only makes sense before this process opened it
                if not any(u == url for u, _d in _clients):
                    path.mkdir(parents=True, exist_ok=True)
                    _assert_unlocked(path)
                admin = clickhouse_connect.get_client(dsn=f"chdb://{path}")
                admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
                client = _Serialised(
                    clickhouse_connect.get_client(dsn=f"chdb://{path}", database=database)
                )
            else:
                admin = clickhouse_connect.get_client(dsn=url)
                admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
                admin.close()
                client = _Serialised(clickhouse_connect.get_client(dsn=url, database=database))
        except ClickHouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors become one clear message
            msg = str(exc)
            if path is not None and ("EmbeddedServer" in msg or "lock" in msg.lower()):
                raise ClickHouseLocked(
                    f"cannot open the embedded ClickHouse at {path}: another process has it"
                    f" open (only one process may open a chdb path): {msg}"
                ) from exc
            raise ClickHouseError(f"cannot connect to ClickHouse at {url}: {msg}") from exc
        _clients[key] = client
        return client


class _Serialised:
    """command / query / insert of one clickhouse-connect client, one call at a time
    (runner workers share it; the embedded engine's handle is not re-entrant)."""

    def __init__(self, client):
        self._c = client
        self._lock = threading.Lock()

    def command(self, cmd: str, parameters: dict | None = None):
        with self._lock:
            return self._c.command(cmd, parameters=parameters)

    def query(self, q: str, parameters: dict | None = None):
        with self._lock:
            return self._c.query(q, parameters=parameters)

    def insert(self, table: str, data, column_names):
        with self._lock:
            return self._c.insert(table, data, column_names=column_names)


# --- DDL -------------------------------------------------------------------------


def ddl_files(root: Path = CLICKHOUSE_DIR) -> list[Path]:
    return sorted(root.glob("*.sql"))


def _statements(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# --- cluster rendering -------------------------------------------------------------
# The same files, rendered for a cluster: every CREATE gets ON CLUSTER, every
# *MergeTree engine becomes Replicated*MergeTree (ZooKeeper path from the {shard},
# {database}, {table} and {replica} macros), `aggregates` becomes the local table
# `aggregates_local` plus a Distributed `aggregates` sharded by symbol; insert-time
# views read the local table (they fire on each shard), refreshable ones the
# Distributed table.

DISTRIBUTED_TABLES = {"aggregates": "cityHash64(symbol)"}
_CREATE = re.compile(r"\bCREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)")
_ENGINE = re.compile(r"\bENGINE = (?!Replicated|Distributed)(\w*?)MergeTree\b(?:\(([^()]*)\))?")


def check_cluster_name(name: str) -> str:
    if not _DB_NAME.match(name or ""):
        raise ClickHouseError(f"invalid ClickHouse cluster name {name!r}: letters, digits and _")
    return name


def render_statement(stmt: str, cluster: str | None) -> list[str]:
    """One file statement as the statements to run (several for a Distributed table)."""
    if cluster is None:
        return [stmt]
    check_cluster_name(cluster)
    m = _CREATE.search(stmt)
    if not m:
        return [stmt]
    kind, name = m.group(1), m.group(2)
    local = f"{name}_local" if kind == "TABLE" and name in DISTRIBUTED_TABLES else name
    out = (
        stmt[: m.start()]
        + f"CREATE {kind} IF NOT EXISTS {local} ON CLUSTER {cluster}"
        + stmt[m.end() :]
    )
    if kind == "MATERIALIZED VIEW" and "REFRESH" not in out:
        for t in DISTRIBUTED_TABLES:
            out = re.sub(rf"\bFROM {t}\b", f"FROM {t}_local", out)

    def engine(e: re.Match) -> str:
        args = ["'/clickhouse/tables/{shard}/{database}/{table}'", "'{replica}'"]
        if e.group(2):
            args.append(e.group(2))
        return f"ENGINE = Replicated{e.group(1)}MergeTree({', '.join(args)})"

    out = _ENGINE.sub(engine, out)
    if local == name:
        return [out]
    return [
        out,
        f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {DISTRIBUTED_TABLES[name]})",
    ]


def render(root: Path = CLICKHOUSE_DIR, cluster: str | None = None) -> list[tuple[str, str]]:
    """(file name, statement) of every db/clickhouse file, rendered for `cluster`."""
    return [
        (path.name, out)
        for path in ddl_files(root)
        for stmt in _statements(path.read_text())
        for out in render_statement(stmt, cluster)
    ]


def migrate(client, root: Path = CLICKHOUSE_DIR, cluster: str | None = None) -> dict:
    """Apply every db/clickhouse file whose sha256 the ledger does not have, in order
    (rendered for `cluster` when given: needs a server with that cluster defined)."""
    applied = []
    files = ddl_files(root)
    ledger = root / "001_schema_files.sql"
    if ledger.exists():  # the ledger table itself (CREATE ... IF NOT EXISTS)
        for stmt in _statements(ledger.read_text()):
            for s in render_statement(stmt, cluster):
                client.command(s)
    for path in files:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        done = client.query(
            "SELECT count() FROM tickagg_schema_files FINAL"
            " WHERE path = {p:String} AND sha256 = {s:String}",
            parameters={"p": path.name, "s": sha},
        ).result_rows[0][0]
        if done:
            continue
        for stmt in _statements(path.read_text()):
            for s in render_statement(stmt, cluster):
                client.command(s)
        client.insert("tickagg_schema_files", [[path.name, sha]], column_names=["path", "sha256"])
        applied.append(path.name)
    return {"clickhouse_files_applied": applied}


# --- export --------------------------------------------------------------------


def _row(symbol: str, r: dict, now: dt.datetime) -> list:
    return [
        symbol,
        r["timeframe"],
        r["ts_utc"],
        r["open"],
        r["high"],
        r["low"],
        r["close"],
        r["volume"],
        r["vwap"],
        r["trade_count"],
        r["source"],
        r["quality_score"],
        r["source_candles"],
        r["expected_candles"],
        int(r["is_partial"]),
        r["indicators"],
        int(r["is_deleted"]),
        r["version"],
        now,
    ]


def insert_rows(client, symbol: str, rows: Iterable[dict]) -> int:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    data = [_row(symbol, r, now) for r in rows]
    if data:
        client.insert("aggregates", data, column_names=AGG_COLUMNS)
    return len(data)


def export_step(conn, client, symbol: str, claim_token, batch_size: int) -> dict:
    """One batch of one symbol, inside the caller's PostgreSQL transaction:
    read changes above the cursor up to the horizon, insert them into ClickHouse,
    then move the cursor (fenced). Returns {rows, cursor_from, cursor_to, continue}."""
    horizon = queries.export_horizon_advance(conn)
    cursor = queries.export_cursor(conn, symbol)
    if cursor is None:
        raise TickaggError(f"no export task for {symbol}")
    rows = queries.export_batch(conn, symbol, cursor, batch_size, horizon)
    full = len(rows) >= batch_size
    to = rows[-1]["change_no"] if full else max(cursor, horizon)
    try:
        n = insert_rows(client, symbol, rows)
    except Exception as exc:  # noqa: BLE001 - the driver's errors, reported as ours
        raise ClickHouseError(f"ClickHouse refused the export batch of {symbol}: {exc}") from exc
    delay = os.environ.get(CRASH_HOOK_ENV)
    if delay and n:
        log.warning("%s set: sleeping %ss between insert and cursor commit", CRASH_HOOK_ENV, delay)
        time.sleep(float(delay))
    if to != cursor:
        queries.export_advance(conn, symbol, claim_token, cursor, to)
    return {"rows": n, "cursor_from": cursor, "cursor_to": to, "continue": full}


def export_once(
    pool,
    client,
    symbol: str,
    batch_size: int,
    lease_seconds: int = 300,
    wait_seconds: float = ONE_SHOT_EXPORT_WAIT_SECONDS,
) -> dict:
    """One-shot export of a symbol (`tickagg export`): claim its export task, then
    batch by batch (each batch: insert, then cursor + agg_finish in one PostgreSQL
    transaction) until the horizon passes every change number handed out before the
    export started. A transaction open anywhere holds the horizon back (it might
    hold a change number), so the export waits up to wait_seconds for those to end;
    complete=False (and a warning) when it stopped short. busy=True when another
    runner holds the task."""
    totals = {
        "symbol": symbol,
        "rows": 0,
        "batches": 0,
        "busy": False,
        "cursor": None,
        "complete": False,
    }
    with pool.connection() as conn:
        target = queries.export_change_no_issued(conn)
    waited = 0.0
    pause = 0.05
    while True:
        with pool.connection() as conn:
            token = queries.export_claim(conn, symbol, lease_seconds)
            if token is None:
                totals["busy"] = True
                return totals
            task = {
                "canonical_symbol": symbol,
                "timeframe": "1m",
                "task_kind": "export",
                "claim_token": token,
            }
            try:
                with conn.transaction():
                    ts = queries.export_task_cursor_ts(conn, symbol)
                    res = export_step(conn, client, symbol, token, batch_size)
                    queries.agg_finish(
                        conn,
                        task,
                        "success",
                        cursor_from=ts,
                        cursor_to=dt.datetime.now(dt.UTC),
                        bars_written=res["rows"],
                        cont=res["continue"],
                    )
            except Exception as exc:
                with conn.transaction():
                    queries.agg_finish(conn, task, "transient", error=str(exc)[:2000])
                raise
        totals["rows"] += res["rows"]
        totals["batches"] += 1
        totals["cursor"] = res["cursor_to"]
        if res["continue"]:
            continue
        totals["complete"] = res["cursor_to"] >= target
        if totals["complete"] or waited >= wait_seconds:
            if not totals["complete"]:
                log.warning(
                    "export of %s stopped at change %s of %s: a transaction that was open when"
                    " the export started is still running (pg_stat_activity shows it)",
                    symbol,
                    res["cursor_to"],
                    target,
                )
            return totals
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, 1.0)


# --- refreshable views --------------------------------------------------------------

REFRESHABLE_VIEWS = ("daily_bar_counts_mv", "daily_rollup")

# Days of one symbol and timeframe with fewer bars than `expected` (1440 for 1m on a
# 24x7 market); reads daily_bar_counts (db/clickhouse/050), ~3.6k rows per ten years.
GAP_DAYS = """
SELECT day, bars FROM daily_bar_counts
WHERE symbol = {symbol:String} AND timeframe = {timeframe:String} AND bars < {expected:UInt32}
ORDER BY day
"""


def refresh_views(client, views: Iterable[str] = REFRESHABLE_VIEWS) -> list[str]:
    """Refresh the refreshable materialized views now and wait until each is done
    (they also refresh on their own schedule). Names come from REFRESHABLE_VIEWS only."""
    done = []
    for v in views:
        if v not in REFRESHABLE_VIEWS:
            raise ClickHouseError(f"not a refreshable view of tickagg: {v!r}")
        client.command(f"SYSTEM REFRESH VIEW {v}")
        client.command(f"SYSTEM WAIT VIEW {v}")
        done.append(v)
    return done


def gap_days(client, symbol: str, timeframe: str = "1m", expected: int = 1440) -> list[tuple]:
    """(day, bars) with bars < expected from daily_bar_counts (as of its last refresh;
    days without any bar are absent: compare with the calendar for those)."""
    res = client.query(
        GAP_DAYS, parameters={"symbol": symbol, "timeframe": timeframe, "expected": expected}
    )
    return [tuple(r) for r in res.result_rows]


# --- verify ----------------------------------------------------------------------

CH_DAY_CHECKSUMS = """
SELECT timeframe, toDate(timestamp) AS day, count() AS bars,
    sum(
        toInt128(intDiv(toUnixTimestamp(timestamp), 60))
        + 3 * toInt128(floor(open * 1000000. + 0.5))
        + 5 * toInt128(floor(high * 1000000. + 0.5))
        + 7 * toInt128(floor(low * 1000000. + 0.5))
        + 11 * toInt128(floor(close * 1000000. + 0.5))
        + 13 * toInt128(floor(volume * 1000. + 0.5))
        + 17 * toInt128(floor(ifNull(vwap, 0) * 1000000. + 0.5))
        + 19 * toInt128(ifNull(trade_count, 0))
        + 23 * toInt128(source_candles) + 29 * toInt128(expected_candles)
        + 31 * toInt128(quality_score) + 37 * toInt128(is_partial)
    ) AS checksum
FROM aggregates FINAL
WHERE symbol = {symbol:String} AND is_deleted = 0
    AND timestamp >= {from_ts:DateTime64(3, 'UTC')} AND timestamp < {to_ts:DateTime64(3, 'UTC')}
GROUP BY timeframe, day
ORDER BY timeframe, day
"""

FAR_PAST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FAR_FUTURE = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def verify_symbol(conn, client, symbol: str, from_ts=None, to_ts=None) -> list[dict]:
    """Per timeframe and UTC day where PostgreSQL and ClickHouse differ."""
    return compare_symbol(conn, client, symbol, from_ts, to_ts)[0]


def compare_symbol(conn, client, symbol: str, from_ts=None, to_ts=None) -> tuple[list[dict], int]:
    """(verify_symbol's drift, how many timeframe-days either side holds): 0 days
    means nothing was compared."""
    lo, hi = from_ts or FAR_PAST, to_ts or FAR_FUTURE
    pg = {
        (r["timeframe"], r["day"]): (int(r["bars"]), int(r["checksum"]))
        for r in queries.export_day_checksums(conn, symbol, lo, hi)
    }
    try:
        res = client.query(
            CH_DAY_CHECKSUMS,
            parameters={
                "symbol": symbol,
                "from_ts": lo.astimezone(dt.UTC).replace(tzinfo=None),
                "to_ts": hi.astimezone(dt.UTC).replace(tzinfo=None),
            },
        )
    except Exception as exc:  # noqa: BLE001 - the driver's errors, reported as ours
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClickHouseError(
            f"ClickHouse could not be read for verify ({first_line[:300]});"
            " are its tables there? `tickagg migrate --clickhouse-url URL` creates them"
        ) from exc
    ch = {(tf, day): (int(n), int(cs)) for tf, day, n, cs in res.result_rows}
    drift = []
    days = sorted(set(pg) | set(ch))
    for key in days:
        p, c = pg.get(key), ch.get(key)
        if p != c:
            drift.append(
                {
                    "symbol": symbol,
                    "timeframe": key[0],
                    "day": key[1].isoformat(),
                    "pg_bars": p[0] if p else 0,
                    "ch_bars": c[0] if c else 0,
                    "checksum_match": bool(p and c and p[1] == c[1]),
                }
            )
    return drift, len(days)
