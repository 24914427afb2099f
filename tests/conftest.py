"""Shared fixtures: one private PostgreSQL per session, a migrated template, a fresh DB per test.

Fixtures
  embedded_pg            session  EmbeddedPostgres serving every test (superuser `postgres`).
  postgresql             function psycopg connection (pytest-postgresql) to a fresh copy of
                                  the template database, which `runner.migrate.migrate` built once.
  dsn                    function str DSN of that per-test database.
  conn                   function psycopg connection to it, autocommit=True, row_factory=dict_row.
  role_dsn               function callable role_dsn(role="tickagg_runner") -> DSN whose
                                  sessions start with SET ROLE role (for NOLOGIN roles).
  empty_dsn              function DSN of a brand-new, empty (unmigrated) database.
  schema_dump            session  callable schema_dump(dsn) -> pg_dump --schema-only of `tickagg`.
  ch_url                 session  chdb:// URL of the one embedded ClickHouse engine of this test
                                  process (chdb allows one path per process); tests take a
                                  database each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from pytest_postgresql import factories

from runner.embedded_pg import EmbeddedPostgres, free_port, library_installed
from runner.migrate import SCHEMA, migrate

# The port must be known when the factories below are declared, before the server starts.
PG_PORT = int(os.environ.get("TICKAGG_TEST_PG_PORT") or free_port())
PG_HOST = "127.0.0.1"
PG_USER = "postgres"
TEST_DBNAME = "tickagg_test"
# No TimescaleDB background workers: its launcher's scheduler visits every database
# and made CREATE DATABASE .. TEMPLATE fail (template "being accessed by other
# users"); the tests compress chunks themselves rather than wait for a policy job.
TIMESCALEDB_SETTINGS = {
    "shared_preload_libraries": "timescaledb",
    "timescaledb.max_background_workers": "0",
    "timescaledb.telemetry_level": "off",
}


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="tickagg-test-pg-"))
    root.chmod(0o755)  # as root, the postgres user must be able to traverse into it
    # Only this cluster preloads TimescaleDB, where it is installed (tests/
    # test_timescaledb.py converts a copy of the template); elsewhere it is as ever.
    settings = TIMESCALEDB_SETTINGS if library_installed("timescaledb") else None
    pg = EmbeddedPostgres(root / "data", port=PG_PORT, settings=settings).start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def load_schema(host: str, port: int, user: str, dbname: str, password: str | None, **_) -> None:
    """pytest-postgresql loader: build the template database with the real migrate."""
    migrate(make_conninfo(host=host, port=port, user=user, dbname=dbname, password=password))


tickagg_pg_noproc = factories.postgresql_noproc(
    host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=TEST_DBNAME, load=[load_schema]
)


@pytest.fixture(scope="session")
def tickagg_pg_server(embedded_pg: EmbeddedPostgres, request: pytest.FixtureRequest):
    """The noproc executor, requested only after the embedded server is up."""
    return request.getfixturevalue("tickagg_pg_noproc")


postgresql = factories.postgresql("tickagg_pg_server")


@pytest.fixture
def dsn(postgresql: psycopg.Connection) -> str:
    return make_conninfo(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=postgresql.info.dbname)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def role_dsn(dsn: str) -> Callable[[str], str]:
    """DSN that logs in as postgres and immediately becomes `role` (roles here are NOLOGIN)."""

    def make(role: str = "tickagg_runner") -> str:
        return make_conninfo(dsn, options=f"-c role={role}")

    return make


@pytest.fixture
def empty_dsn(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    name = f"tickagg_empty_{uuid.uuid4().hex[:12]}"
    dsn = embedded_pg.ensure_database(name)
    yield dsn
    with psycopg.connect(embedded_pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def ch_url(tmp_path_factory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb') / 'engine'}"


@pytest.fixture(scope="session")
def schema_dump(embedded_pg: EmbeddedPostgres) -> Callable[[str], str]:
    def dump(dsn: str) -> str:
        params = conninfo_to_dict(dsn)
        out = subprocess.run(
            [
                str(embedded_pg.bin("pg_dump")),
                "--schema-only",
                f"--schema={SCHEMA}",
                "--no-owner",
                f"--host={params['host']}",
                f"--port={params['port']}",
                f"--username={params['user']}",
                str(params["dbname"]),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # pg_dump >= 15.14 brackets the script with \restrict <random key>; not catalog content.
        return "\n".join(
            line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
        )

    return dump
