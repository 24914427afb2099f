"""`tickagg migrate --timescaledb`: on a server without TimescaleDB, or with it installed
but not preloaded, it fails with a clear message and changes nothing; where the
extension is preloaded, data_bars becomes a (compressed) hypertable whose late data,
corrections and deletions, also inside compressed chunks, still give exactly the
oracle's bars.

The test cluster preloads TimescaleDB where it is installed for the server
(tests/conftest.py); where it is not (CI: Debian does not package it and CI cannot
build it), the tests that need it skip and say so. README, "TimescaleDB (optional)",
says how to build 2.28.3."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import shutil
import tempfile
from pathlib import Path

import helpers as h
import psycopg
import pytest
from oracle import diff, expected_bars, random_bars, source_rank
from test_late_data_property import SOURCES, Model, fresh_bar, write

from runner import timescaledb
from runner.embedded_pg import EmbeddedPostgres, library_installed

START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
NOT_PRELOADED = (
    "TimescaleDB is not preloaded by this test cluster: it is not installed for this "
    "PostgreSQL server (Debian does not package it; CI cannot build it). Build 2.28.3 as "
    "README 'TimescaleDB (optional)' says to run this test."
)


def _timescaledb_available(conn) -> bool:
    return conn.execute(timescaledb.AVAILABLE_SQL).fetchone() is not None


def _require_preloaded(conn) -> None:
    if not conn.execute(timescaledb.PRELOADED_SQL).fetchone()["preloaded"]:
        pytest.skip(NOT_PRELOADED)


def _relkind(conn) -> str:
    return conn.execute(
        "SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'tickagg.data_bars'::regclass"
    ).fetchone()["relkind"]


def _data_bars_triggers(conn) -> dict[str, str]:
    return {
        r["tgname"]: r["definition"]
        for r in conn.execute(
            "SELECT tgname, pg_get_triggerdef(oid) AS definition FROM pg_trigger"
            " WHERE tgrelid = 'tickagg.data_bars'::regclass AND NOT tgisinternal"
        )
    }


def test_without_the_extension_it_fails_clearly_and_changes_nothing(conn, dsn, schema_dump):
    if _timescaledb_available(conn):
        pytest.skip("this server has TimescaleDB; the conversion test covers it")
    before = schema_dump(dsn)
    out = h.run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=120)
    assert out.returncode != 0
    assert "TimescaleDB is not available on this server" in out.stderr, out.stderr
    assert "nothing was changed" in out.stderr
    assert schema_dump(dsn) == before
    assert _relkind(conn) == "r"


def test_installed_but_not_preloaded_it_fails_with_the_hint():
    """The server ends a session that loads TimescaleDB unpreloaded (FATAL); the
    migrate says so with the fix before anything is created, instead of
    "the connection is closed"."""
    if not library_installed("timescaledb"):
        pytest.skip(NOT_PRELOADED)
    root = Path(tempfile.mkdtemp(prefix="tickagg-test-nopreload-", dir="/tmp"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "data").start()  # the library installed, not preloaded
    try:
        dsn = pg.ensure_database("not_preloaded")
        out = h.run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=120)
        assert out.returncode == 1, out.stderr
        assert "installed but not preloaded" in out.stderr, out.stderr
        assert "shared_preload_libraries" in out.stderr and "nothing was changed" in out.stderr
        with psycopg.connect(dsn) as c:
            assert c.execute("SELECT to_regnamespace('tickagg')").fetchone()[0] is None
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_compress_after_needs_timescaledb(dsn):
    out = h.run_cli(dsn, "migrate", "--compress-after", "30d", timeout=60)
    assert out.returncode == 2 and "--compress-after needs --timescaledb" in out.stderr


def test_data_bars_become_a_hypertable_and_late_data_still_cascades(conn, dsn):
    _require_preloaded(conn)
    out = h.run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=300)
    assert out.returncode == 0, out.stderr
    hyper = conn.execute(
        "SELECT count(*) AS n FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = 'tickagg' AND hypertable_name = 'data_bars'"
        " AND compression_enabled"
    ).fetchone()["n"]
    assert hyper == 1
    # deletes are collected by a row trigger: no DELETE trigger with a transition table
    triggers = _data_bars_triggers(conn)
    assert {"data_bars_collect_deleted", "data_bars_flush_deleted"} <= set(triggers)
    assert not [d for d in triggers.values() if "OLD TABLE" in d], triggers
    again = h.run_cli(dsn, "migrate", "--timescaledb", timeout=300)  # idempotent
    assert again.returncode == 0 and "data_bars_converted: False" in again.stdout
    plain = h.run_cli(dsn, "migrate", timeout=300)  # db/post leaves the collected deletes
    assert plain.returncode == 0, plain.stderr
    assert _data_bars_triggers(conn) == triggers
    other = h.run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "10d", timeout=300)
    assert other.returncode == 0, other.stderr
    policies = conn.execute(
        "SELECT config ->> 'compress_after' AS after FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_compression' AND hypertable_name = 'data_bars'"
    ).fetchall()
    assert [p["after"] for p in policies] == ["10 days"]
    # a rollback drops every trigger of the code layer; migrating forward again
    # collects the deletes of the still compressed table instead of failing
    back = h.run_cli(dsn, "migrate", "--rollback", "1", timeout=300)
    assert back.returncode == 0, back.stderr
    forward = h.run_cli(dsn, "migrate", timeout=300)
    assert forward.returncode == 0, forward.stderr
    assert _data_bars_triggers(conn) == triggers

    conn.execute("SELECT tickagg.register_symbol('EURUSD', 'forex_24x5', 'fx')")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (START,))
    h.rollups_only(conn)
    conn.execute(
        """
        INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume,
                                       source, source_rank)
        SELECT 'EURUSD', g, 1.1, 1.2, 1.0, 1.1, 10, 'polygon_historical', 0
        FROM generate_series(timestamptz '2025-07-01 13:00Z', '2025-07-01 14:59Z',
                             interval '1 minute') AS g
        """
    )
    h.drive(dsn)
    # a late correction: the statement trigger on the hypertable dirties its buckets
    conn.execute(
        "UPDATE tickagg.data_bars SET high = 1.5, source = 'live_aggregated', source_rank = 30"
        " WHERE canonical_symbol = 'EURUSD' AND ts_utc = '2025-07-01 13:07Z'"
    )
    assert conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"] > 0
    h.drive(dsn)
    highs = conn.execute(
        "SELECT timeframe, high FROM tickagg.derived_data_bars"
        " WHERE canonical_symbol = 'EURUSD' AND ts_utc <= '2025-07-01 13:07Z'"
        " AND bucket_end > '2025-07-01 13:07Z'"
    ).fetchall()
    assert {r["timeframe"] for r in highs} >= {"5m", "15m", "30m", "1h"}
    assert all(r["high"] == 1.5 for r in highs), highs


D = dt.date
AGG_START = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
# three 7-day chunks of forex over the March US DST switch, two of crypto
SERIES = (
    ("FXT", "forex_24x5", 1.0859375, D(2025, 3, 2), D(2025, 3, 21)),
    ("BTT", "crypto_24x7", 60000.0, D(2025, 3, 3), D(2025, 3, 16)),
)


def _compress_all(conn) -> int:
    """Compress every chunk, recompressing those that corrections partly decompressed."""
    conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true)"
        " FROM show_chunks('tickagg.data_bars') AS c"
    )
    return conn.execute(
        "SELECT count(*) FILTER (WHERE is_compressed) AS n, count(*) AS chunks"
        " FROM timescaledb_information.chunks WHERE hypertable_name = 'data_bars'"
    ).fetchone()["n"]


@pytest.mark.parametrize("storage", ["compressed_hypertable", "collected_on_plain_table"])
def test_corrections_and_deletes_match_the_oracle(dsn, conn, storage):
    """Corrections (the ingest path's upserts, UPDATE), late minutes and deletions
    of minutes and of whole buckets, into compressed chunks, interleaved with partial
    runs and recompression: every derived bar equals the oracle, data_bars the model
    of the rank rule, and every deleted minute has its export tombstone. The same
    collected-deletes path runs on a plain table too, so CI covers it without
    TimescaleDB."""
    if storage == "compressed_hypertable":
        _require_preloaded(conn)
        out = h.run_cli(dsn, "migrate", "--timescaledb", "--compress-after", "30d", timeout=300)
        assert out.returncode == 0, out.stderr
    else:
        conn.execute("SELECT tickagg.data_bars_collect_deletes()")
    compressed = storage == "compressed_hypertable"
    rng = random.Random(20250309)
    models: dict[str, Model] = {}
    for sym, cal, base, first, last in SERIES:
        m = Model(cal, random_bars(cal, first, last, rng, base=base, hole_rate=0.01))
        m.bars = dict(m.universe)
        models[sym] = m
        h.register(conn, sym, cal)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    for sym, m in models.items():
        h.insert_bars(conn, sym, m.bars)
    h.drive(dsn)
    if compressed:
        assert _compress_all(conn) >= 3

    deleted: set[tuple[str, dt.datetime]] = set()
    # a whole day: whole compressed batches, which TimescaleDB would drop unseen
    # were there no row trigger
    day = [t for t in models["BTT"].bars if t.date() == D(2025, 3, 5)]
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'BTT'"
        " AND ts_utc >= '2025-03-05' AND ts_utc < '2025-03-06'"
    )
    for t in day:
        del models["BTT"].bars[t]
        deleted.add(("BTT", t))
    log: list[str] = []
    ops = ("correct", "lower", "late", "update", "del_min", "del_bucket", "drive", "recompress")
    for _ in range(40):
        sym = rng.choice(list(models))
        m = models[sym]
        existing = sorted(m.bars)
        op = rng.choice(ops)
        log.append(f"{op} {sym}")
        if op in ("correct", "lower"):
            bars = {}
            for t in rng.sample(existing, rng.choice((1, 5, 40))):
                r = source_rank(m.bars[t].source)
                higher = op == "correct"
                choices = [
                    s for s in SOURCES if (source_rank(s) > r if higher else source_rank(s) < r)
                ]
                if choices:
                    bars[t] = fresh_bar(rng, m.bars[t].open, rng.choice(choices))
            write(conn, sym, m, bars, log)
        elif op == "late":
            holes = [t for t in m.trading_minutes_before(existing[-1]) if t not in m.bars]
            picks = rng.sample(holes, min(len(holes), rng.choice((1, 5, 60))))
            write(
                conn,
                sym,
                m,
                {t: fresh_bar(rng, m.bars[existing[-1]].close, "live_aggregated") for t in picks},
                log,
            )
        elif op == "update":
            picks = rng.sample(existing, rng.choice((1, 10)))
            conn.execute(
                "UPDATE tickagg.data_bars SET high = high + 1.0 / 1024"
                " WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (sym, picks),
            )
            for t in picks:
                m.bars[t] = dataclasses.replace(m.bars[t], high=m.bars[t].high + 1 / 1024)
        elif op == "del_min":
            picks = rng.sample(existing, rng.choice((1, 3, 10)))
            conn.execute(
                "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (sym, picks),
            )
            for t in picks:
                del m.bars[t]
                deleted.add((sym, t))
        elif op == "del_bucket":
            tf = rng.choice(("5m", "1h", "4h", "1d"))
            bucket = m.cal.bucket(tf, rng.choice(existing))
            if bucket is not None:
                start, end, _ = bucket
                log[-1] += f" {tf} {start}"
                conn.execute(
                    "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s"
                    " AND ts_utc >= %s AND ts_utc < %s",
                    (sym, start, end),
                )
                for t in [t for t in existing if start <= t < end]:
                    del m.bars[t]
                    deleted.add((sym, t))
        elif op == "drive":
            h.partial_drive(dsn, rng.choice((1, 3, 20)), max_windows=rng.choice((1, 20, None)))
        elif op == "recompress" and compressed:
            _compress_all(conn)
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    h.drive(dsn)
    print(f"{len(log)} operations: " + "; ".join(log))

    expected = {}
    for sym, m in models.items():
        expected.update(expected_bars(sym, m.cal.code, m.bars, AGG_START))
    problems = diff(expected, h.derived(conn, models))
    assert not problems, "\n".join(problems)
    for sym, m in models.items():
        stored = conn.execute(
            "SELECT ts_utc, high, source FROM tickagg.data_bars WHERE canonical_symbol = %s", (sym,)
        ).fetchall()
        assert {r["ts_utc"]: (r["high"], r["source"]) for r in stored} == {
            t: (b.high, b.source) for t, b in m.bars.items()
        }, sym
    gone = {k for k in deleted if k[1] not in models[k[0]].bars}
    tombstones = {
        (r["canonical_symbol"], r["ts_utc"])
        for r in conn.execute("SELECT canonical_symbol, ts_utc FROM tickagg.data_bars_tombstones")
    }
    assert gone and gone <= tombstones <= deleted
    assert conn.execute("SELECT count(*) AS n FROM tickagg.data_bars_deleted").fetchone()["n"] == 0
    assert h.pending_invalidations(conn) == 0
