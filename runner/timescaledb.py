"""`tickagg migrate --timescaledb`: data_bars as a TimescaleDB hypertable, optionally compressed.

tickagg needs no extension; this is for servers that have TimescaleDB and want its
chunked storage and native compression for the 1-minute source, the largest table.
What it does, after the normal migrate and under the same advisory lock, in one
transaction:

- CREATE EXTENSION timescaledb (the server must preload it: checked first, since
  a session that loads it unpreloaded is ended with FATAL);
- data_bars becomes a hypertable on ts_utc with 7-day chunks (existing rows move);
  its statement triggers with transition tables stay (TimescaleDB 2.18+ fires them
  on hypertables);
- with `--compress-after`: compression segmented by symbol and a compression policy.
  A compressed hypertable refuses DELETE triggers with transition tables, so
  data_bars' are replaced by a row trigger that collects each deleted minute in
  data_bars_deleted and a statement trigger that hands them on through that
  table's own transition table (db/functions/data_bars_collect_deletes.sql, which
  db/post re-applies while data_bars is compressed, also after a rollback); the
  row trigger also makes TimescaleDB decompress, not drop unseen, a batch a DELETE
  removes whole. Late-data invalidation and export tombstones stay exact.

What it leaves alone, and why: `ticks` is natively partitioned by day with the
ticks_retention task (a partitioned table cannot become a hypertable, and dropping a
day partition is already what a retention policy does); derived_data_bars is
rewritten in place by late data and is a few percent of data_bars' size.
"""

from __future__ import annotations

import datetime as dt

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

HYPERTABLE_SQL = """
SELECT compression_enabled
FROM timescaledb_information.hypertables
WHERE hypertable_schema = 'tickagg' AND hypertable_name = 'data_bars'
"""

# Without the loader preloaded its GUCs do not exist (a postgresql.conf entry for
# one would only be an untyped placeholder).
PRELOADED_SQL = """
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_settings
    WHERE name = 'timescaledb.max_background_workers' AND vartype = 'integer'
) AS preloaded
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

# add_compression_policy keeps an existing policy whatever its interval: a
# different --compress-after replaces it.
STALE_COMPRESSION_POLICY_SQL = """
SELECT {schema}.remove_compression_policy('tickagg.data_bars')
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression'
    AND hypertable_schema = 'tickagg' AND hypertable_name = 'data_bars'
    AND (config ->> 'compress_after')::interval <> %(after)s::interval
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
    if not conn.execute(PRELOADED_SQL).fetchone()[0]:
        raise TimescaleUnavailable(
            f"TimescaleDB {version} is installed but not preloaded on this server; nothing "
            "was changed. Hint: add timescaledb to shared_preload_libraries in "
            "postgresql.conf (shared_preload_libraries = 'timescaledb', after any libraries "
            "already listed) and restart PostgreSQL."
        )
    return version


def convert(conn: psycopg.Connection, compress_after: dt.timedelta | None) -> dict:
    """Turn data_bars into a hypertable (idempotent). Runs in one transaction: on any
    error nothing changes."""
    version = check_available(conn)
    with conn.transaction():
        # public, where TimescaleDB's documentation puts it, never the session's first
        # schema: in tickagg, the grants of 999_grants.sql would rewrite its functions'.
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public")
        schema = sql.Identifier(conn.execute(EXTENSION_SCHEMA_SQL).fetchone()[0])
        hypertable = conn.execute(HYPERTABLE_SQL).fetchone()
        converted = hypertable is None
        if converted:
            conn.execute(
                sql.SQL(CREATE_HYPERTABLE_SQL).format(schema=schema), {"chunk": CHUNK_INTERVAL}
            )
        if compress_after is not None:
            if converted or not hypertable[0]:
                conn.execute("SELECT tickagg.data_bars_collect_deletes()")
                conn.execute(COMPRESS_SQL)
            for statement in (STALE_COMPRESSION_POLICY_SQL, COMPRESSION_POLICY_SQL):
                conn.execute(sql.SQL(statement).format(schema=schema), {"after": compress_after})
    return {
        "timescaledb_version": version,
        "data_bars_converted": converted,
        "compress_after": str(compress_after) if compress_after is not None else None,
    }
