"""`tickagg migrate --timescaledb`: data_bars as a TimescaleDB hypertable, optionally compressed.

tickagg needs no extension; this is for servers that have TimescaleDB and want its
chunked storage and native compression for the 1-minute source, the largest table.
What it does, after the normal migrate and under the same advisory lock:

- CREATE EXTENSION timescaledb (the server must preload it);
- data_bars becomes a hypertable on ts_utc with 7-day chunks (existing rows move);
  TimescaleDB refuses to convert a table that has triggers with transition tables,
  so tickagg's statement triggers on data_bars are dropped first and re-created from
  their own definitions (pg_get_triggerdef), in the same transaction: nothing else
  is re-applied;
- with `--compress-after`, compression segmented by symbol and a compression policy.

What it leaves alone, and why: `ticks` is natively partitioned by day with the
ticks_retention task (a partitioned table cannot become a hypertable, and dropping a
day partition is already what a retention policy does); derived_data_bars is
rewritten in place by late data and is a few percent of data_bars' size.

Requires TimescaleDB 2.18 or later: earlier versions reject statement triggers with
transition tables on hypertables, which late-data invalidation relies on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from .errors import TickaggError

MIN_VERSION = (2, 18)
CHUNK_INTERVAL = dt.timedelta(days=7)

AVAILABLE_SQL = """
SELECT default_version, installed_version
FROM pg_catalog.pg_available_extensions
WHERE name = 'timescaledb'
"""

IS_HYPERTABLE_SQL = """
SELECT EXISTS (
    SELECT 1 FROM timescaledb_information.hypertables
    WHERE hypertable_schema = 'tickagg' AND hypertable_name = 'data_bars'
) AS is_hypertable
"""

# Triggers with transition tables block create_hypertable; they are re-created after it.
TRANSITION_TRIGGERS_SQL = """
SELECT t.tgname AS name, pg_catalog.pg_get_triggerdef(t.oid) AS definition
FROM pg_catalog.pg_trigger AS t
WHERE t.tgrelid = 'tickagg.data_bars'::regclass
    AND NOT t.tgisinternal
    AND (t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL)
"""

# The extension's functions live in the schema it was created in (public by default).
EXTENSION_SCHEMA_SQL = """
SELECT n.nspname
FROM pg_catalog.pg_extension AS e
JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'timescaledb'
"""

CREATE_HYPERTABLE_SQL = """
SELECT {schema}.create_hypertable(
    'tickagg.data_bars', 'ts_utc',
    chunk_time_interval => %(chunk)s::interval, migrate_data => true)
"""

COMPRESS_SQL = """
ALTER TABLE tickagg.data_bars SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'canonical_symbol',
    timescaledb.compress_orderby = 'ts_utc'
)
"""

COMPRESSION_POLICY_SQL = """
SELECT {schema}.add_compression_policy(
    'tickagg.data_bars', compress_after => %(after)s::interval, if_not_exists => true)
"""


class TimescaleUnavailable(TickaggError):
    """The server cannot run TimescaleDB (absent, too old, or not preloaded)."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("-")[0].split(".")[:2])


def check_available(conn: psycopg.Connection) -> str:
    """The version CREATE EXTENSION would use; raises TimescaleUnavailable otherwise."""
    row = conn.execute(AVAILABLE_SQL).fetchone()
    if row is None:
        raise TimescaleUnavailable(
            "TimescaleDB is not available on this server (no 'timescaledb' in "
            "pg_available_extensions); nothing was changed. Hint: install the "
            "timescaledb-2-postgresql package for your server version and add timescaledb "
            "to shared_preload_libraries, or run without --timescaledb: tickagg needs no "
            "extension (ticks keep daily partitions and the ticks_retention task)."
        )
    default_version, installed_version = row[0], row[1]
    version = installed_version or default_version
    if _version(version) < MIN_VERSION:
        raise TimescaleUnavailable(
            f"TimescaleDB {version} is too old: tickagg needs 2.18+ (statement triggers "
            "with transition tables on hypertables); nothing was changed."
        )
    return version


@contextmanager
def transition_triggers_set_aside(conn: psycopg.Connection) -> Iterator[None]:
    """data_bars without its transition-table triggers inside the block, the same
    triggers (their own definitions) after it; call within a transaction."""
    triggers = conn.execute(TRANSITION_TRIGGERS_SQL).fetchall()
    for name, _ in triggers:
        conn.execute(sql.SQL("DROP TRIGGER {} ON tickagg.data_bars").format(sql.Identifier(name)))
    yield
    for _, definition in triggers:
        conn.execute(definition)


def convert(conn: psycopg.Connection, compress_after: dt.timedelta | None) -> dict:
    """Turn data_bars into a hypertable (idempotent). Runs in one transaction: on any
    error nothing changes."""
    version = check_available(conn)
    with conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        schema = sql.Identifier(conn.execute(EXTENSION_SCHEMA_SQL).fetchone()[0])
        converted = False
        if not conn.execute(IS_HYPERTABLE_SQL).fetchone()[0]:
            with transition_triggers_set_aside(conn):
                conn.execute(
                    sql.SQL(CREATE_HYPERTABLE_SQL).format(schema=schema),
                    {"chunk": CHUNK_INTERVAL},
                )
            converted = True
        if compress_after is not None:
            conn.execute(COMPRESS_SQL)
            conn.execute(
                sql.SQL(COMPRESSION_POLICY_SQL).format(schema=schema), {"after": compress_after}
            )
    return {
        "timescaledb_version": version,
        "data_bars_converted": converted,
        "compress_after": str(compress_after) if compress_after is not None else None,
    }
