"""`tickagg migrate --timescaledb`: on a server without TimescaleDB it fails with a clear
message and changes nothing; where the extension exists, data_bars becomes a
hypertable whose late-data triggers still fire and whose rollups stay exact."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from helpers import drive, rollups_only, run_cli

from runner import timescaledb

START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)


def _timescaledb_available(conn) -> bool:
    return conn.execute(timescaledb.AVAILABLE_SQL).fetchone() is not None


def _relkind(conn) -> str:
    return conn.execute(
        "SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'tickagg.data_bars'::regclass"
    ).fetchone()["relkind"]


def test_without_the_extension_it_fails_clearly_and_changes_nothing(conn, dsn, schema_dump):
    if _timescaledb_available(conn):
        pytest.skip("this server has TimescaleDB; the conversion test covers it")
    before = schema_dump(dsn)
    out = run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=120)
    assert out.returncode != 0
    assert "TimescaleDB is not available on this server" in out.stderr, out.stderr
    assert "nothing was changed" in out.stderr
    assert schema_dump(dsn) == before
    assert _relkind(conn) == "r"


def test_compress_after_needs_timescaledb(dsn):
    out = run_cli(dsn, "migrate", "--compress-after", "30d", timeout=60)
    assert out.returncode == 2 and "--compress-after needs --timescaledb" in out.stderr


def test_data_bars_become_a_hypertable_and_late_data_still_cascades(conn, dsn):
    if not _timescaledb_available(conn):
        pytest.skip(
            "TimescaleDB is not installed on this PostgreSQL server (no 'timescaledb' in "
            "pg_available_extensions; Debian does not package it): the conversion is only "
            "tested where the extension exists"
        )
    out = run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=300)
    assert out.returncode == 0, out.stderr
    hyper = conn.execute(
        "SELECT count(*) AS n FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = 'tickagg' AND hypertable_name = 'data_bars'"
    ).fetchone()["n"]
    assert hyper == 1
    again = run_cli(dsn, "migrate", "--timescaledb", timeout=300)  # idempotent
    assert again.returncode == 0 and "data_bars_converted: False" in again.stdout

    conn.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', 'fx')")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    rollups_only(conn)
    conn.execute(
        """
        INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume,
                                       source, source_rank)
        SELECT 'EURUSD', g, 1.1, 1.2, 1.0, 1.1, 10, 'polygon_historical', 0
        FROM generate_series(timestamptz '2025-07-01 13:00Z', '2025-07-01 14:59Z',
                             interval '1 minute') AS g
        """
    )
    drive(dsn)
    # a late correction: the statement trigger on the hypertable dirties its buckets
    conn.execute(
        "UPDATE tickagg.data_bars SET high = 1.5, source = 'live_aggregated', source_rank = 30"
        " WHERE canonical_symbol = 'EURUSD' AND ts_utc = '2025-07-01 13:07Z'"
    )
    assert conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"] > 0
    drive(dsn)
    highs = conn.execute(
        "SELECT timeframe, high FROM tickagg.derived_data_bars"
        " WHERE canonical_symbol = 'EURUSD' AND ts_utc <= '2025-07-01 13:07Z'"
        " AND bucket_end > '2025-07-01 13:07Z'"
    ).fetchall()
    assert {r["timeframe"] for r in highs} >= {"5m", "15m", "30m", "1h"}
    assert all(r["high"] == 1.5 for r in highs), highs


def test_the_conversion_sets_aside_only_the_data_bars_transition_triggers(dsn):
    """Around create_hypertable, data_bars' transition-table triggers are dropped and
    re-created from their own definitions; no function, view or other file is
    re-applied (issue 18 item 6: the conversion re-applied every db/ file). Runs
    without TimescaleDB: the block is empty here."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        triggers_sql = (
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE tgrelid = 'tickagg.data_bars'::regclass AND NOT tgisinternal ORDER BY 1"
        )
        # a function or view re-created is a new catalog row version
        catalog_sql = (
            "SELECT oid, xmin::text FROM pg_proc WHERE pronamespace = 'tickagg'::regnamespace"
            " UNION ALL SELECT oid, xmin::text FROM pg_class"
            " WHERE relnamespace = 'tickagg'::regnamespace AND relkind = 'v' ORDER BY 1"
        )
        catalog = conn.execute(catalog_sql).fetchall()
        before = conn.execute(triggers_sql).fetchall()
        assert len(before) == 4  # invalidation (3) and export tombstones
        with conn.transaction():
            with timescaledb.transition_triggers_set_aside(conn):
                assert not conn.execute(timescaledb.TRANSITION_TRIGGERS_SQL).fetchall()
            assert conn.execute(triggers_sql).fetchall() == before
            assert conn.execute(catalog_sql).fetchall() == catalog, "functions were re-created"
