"""Connection handling: one psycopg_pool.ConnectionPool, dict rows,
autocommit connections (callers own transactions with ``conn.transaction()``).
"""

from __future__ import annotations

import re
import time
import weakref

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .errors import wrap_exceptions

APPLICATION_NAME = "tickagg"

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_QS_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s]*", re.I)


def mask_dsn(text: str | None) -> str:
    """Replace any password in a DSN (URL or key=value form) with ***."""
    if not text:
        return ""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = _KV_PASSWORD.sub(r"\g<head>***", text)
    return _QS_PASSWORD.sub(r"\g<head>***", text)


# Settings every tickagg session pins, whatever the server, database or role
# default: the client parses dates and intervals in these styles (a database set
# to DateStyle 'SQL, DMY' or IntervalStyle 'sql_standard' broke every command
# after its claim had committed), shows times in UTC, needs floats printed
# exactly, resolves no name through a caller's schemas, and the engine's
# transactions are written for READ COMMITTED (under a serializable default a
# failure could not even be recorded).
PINNED_SETTINGS = (
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("default_transaction_isolation", "read committed"),
    ("search_path", "pg_catalog"),
    # a killed client's running statement is cancelled within seconds, not left to
    # run on (and hold its locks) until it ends
    ("client_connection_check_interval", "2s"),
)


def session_options(dsn: str, *extra: tuple[str, str], schema_ddl: bool = False) -> str:
    """libpq `options` for a tickagg session: the DSN's own options, then the
    pinned settings and `extra` (later -c wins). schema_ddl: a migration session,
    whose files and yoyo set their own search_path."""
    given = psycopg.conninfo.conninfo_to_dict(dsn).get("options") or ""
    settings = [(n, v) for n, v in PINNED_SETTINGS if not (schema_ddl and n == "search_path")]
    pinned = " ".join(f"-c {n}={v.replace(' ', chr(92) + ' ')}" for n, v in (*settings, *extra))
    return f"{given} {pinned}".strip()


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """A single dedicated connection (used by the LISTEN thread)."""
    kwargs.setdefault("options", session_options(dsn))
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("row_factory", dict_row)
    kwargs.setdefault("application_name", APPLICATION_NAME)
    return psycopg.connect(dsn, **kwargs)


# A connection handed out again within this many seconds of its last hand-out is
# not checked: the check is a round trip, and a runner takes a connection for
# every claim and every run, so checking each hand-out cost a late bar ~0.3 ms. One that
# sat unused longer (a quiet market, a firewall dropping idle sessions) is checked
# before use; after a server restart a busy runner's next statement fails instead
# (transient), and the runner checks the whole pool then (Runner._fail).
CHECK_AFTER_IDLE_SECONDS = 2.0

_handed_out_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _check_unless_just_used(conn: psycopg.Connection) -> None:
    now = time.monotonic()
    last = _handed_out_at.get(conn)
    if last is None or now - last > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)
    _handed_out_at[conn] = now


# How long the pool keeps retrying a lost connection in the background before it
# gives the slot up; a slot given up is re-grown on the next request. Short, so that
# after a long outage the pool does not sit out a grown backoff delay (psycopg_pool
# doubles it up to its default 5 minutes) once the server is back.
RECONNECT_TIMEOUT_SECONDS = 5.0


class Pool(ConnectionPool):
    """A ConnectionPool whose wait for a connection, when it runs out, raises
    DatabaseUnavailable (a TickaggError) instead of psycopg_pool's PoolTimeout."""

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        with wrap_exceptions():
            return super().getconn(timeout)


def make_pool(
    dsn: str,
    max_size: int = 4,
    min_size: int = 1,
    name: str = "tickagg",
    statement_timeout: float | None = None,
    timeout: float = 30,
) -> Pool:
    """statement_timeout (seconds): set for every session of the pool. timeout
    (seconds): the longest wait for a connection, after which the database counts
    as unavailable."""
    # Probe once so a bad DSN fails fast with PostgreSQL's own message
    # instead of a pool timeout.
    with wrap_exceptions():
        connect(dsn, connect_timeout=10).close()
    timeout_setting = (
        ()
        if statement_timeout is None
        else (("statement_timeout", str(int(statement_timeout * 1000))),)
    )
    kwargs = {
        "autocommit": True,
        "row_factory": dict_row,
        "application_name": APPLICATION_NAME,
        "options": session_options(dsn, *timeout_setting),
    }
    pool = Pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        kwargs=kwargs,
        check=_check_unless_just_used,
        name=name,
        open=False,
        timeout=timeout,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
    )
    try:
        with wrap_exceptions():
            pool.open(wait=True, timeout=timeout)
    except BaseException:
        pool.close()
        raise
    return pool
