"""ClickHouse mirror (issue 6) against the real embedded engine (chdb).

One engine per test process: `ch_url` opens one chdb directory for the whole
session and every test gets its own ClickHouse database in it. Tests that need
a second process (SIGKILL, the lock message) give that process its own path.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import helpers as h
import psycopg
import pytest
from oracle import Bar1m, random_bars

from runner import clickhouse, queries

UTC = dt.UTC
D = dt.date
SOURCES = ("polygon_historical", "historical_aggregated", "live_gap_filled", "live_aggregated")
START = dt.datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture(scope="session")
def ch_url(tmp_path_factory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb') / 'engine'}"


@pytest.fixture
def ch(ch_url):
    client = clickhouse.connect(ch_url, f"t_{uuid.uuid4().hex[:10]}")
    clickhouse.migrate(client)
    return client


def _setup(conn, symbols=(("FXC", "forex_24x5", 1.0859375), ("CRC", "crypto_24x7", 3000.0))):
    rng = random.Random(7)
    for sym, cal, base in symbols:
        h.register(conn, sym, cal)
        h.insert_bars(conn, sym, random_bars(cal, D(2025, 3, 3), D(2025, 3, 5), rng, base=base))
    h.sync(conn, START)
    h.rollups_only(conn)
    queries.sync_export_tasks(conn, "prod", START)
    return rng


def _drive(conn, dsn) -> None:
    """helpers.drive runs rollups and gap scans; export tasks sit out meanwhile."""
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind = 'export'")
    h.drive(dsn)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = true WHERE task_kind = 'export'")


def _export_all(dsn, client, batch_size=50000) -> int:
    from runner import db

    total = 0
    with db.make_pool(dsn, max_size=2) as pool:
        with pool.connection() as conn:
            syms = queries.export_symbols(conn)
        for s in syms:
            total += clickhouse.export_once(pool, client, s, batch_size)["rows"]
    return total


def _pg_rows(conn) -> dict:
    rows = conn.execute(
        "SELECT canonical_symbol AS s, '1m' AS tf, ts_utc, open, high, low, close, volume, vwap,"
        " trade_count, source FROM tickagg.data_bars"
        " UNION ALL SELECT canonical_symbol, timeframe, ts_utc, open, high, low, close, volume,"
        " vwap, trade_count, 'historical_aggregated' FROM tickagg.derived_data_bars"
        " WHERE deleted_at IS NULL"
    ).fetchall()
    return {
        (r["s"], r["tf"], r["ts_utc"].astimezone(UTC).replace(tzinfo=None)): (
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            r["vwap"],
            r["trade_count"],
            r["source"],
        )  # fmt: skip
        for r in rows
    }


def _ch_rows(client) -> dict:
    res = client.query(
        "SELECT symbol, timeframe, timestamp, open, high, low, close, volume, vwap, trade_count,"
        " source FROM aggregates FINAL WHERE is_deleted = 0"
    )
    return {(r[0], r[1], r[2].replace(tzinfo=None)): (*r[3:10], r[10]) for r in res.result_rows}


def _random_activity(conn, dsn, rng, rounds=25):
    syms = [r["canonical_symbol"] for r in conn.execute(
        "SELECT canonical_symbol FROM tickagg.core_asset_registry_all")]  # fmt: skip
    for _ in range(rounds):
        sym = rng.choice(syms)
        existing = [
            r["ts_utc"]
            for r in conn.execute(
                "SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = %s", (sym,)
            )
        ]
        op = rng.choice(("correct", "same", "lower", "del", "late"))
        picks = rng.sample(existing, min(len(existing), rng.choice((1, 5, 40))))
        if op == "del":
            conn.execute(
                "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (sym, picks),
            )
            continue
        if op == "late":
            picks = [max(existing) + dt.timedelta(minutes=rng.randint(1, 500))]
        bars = {}
        for t in picks:
            p = 1.0859375 if sym == "FXC" else 3000.0
            p += rng.randint(-50, 50) / 1024
            bars[t] = Bar1m(p, p + 2 / 1024, p - 2 / 1024, p, float(rng.randint(0, 9)),
                            None, rng.randint(1, 5), rng.choice(SOURCES))  # fmt: skip
        h.ingest(conn, [(sym, t, b) for t, b in bars.items()])
        if rng.random() < 0.3:
            _drive(conn, dsn)


def test_export_mirrors_postgres_exactly_and_verify(conn, dsn, ch):
    rng = _setup(conn)
    _drive(conn, dsn)
    assert _export_all(dsn, ch) > 0
    assert _ch_rows(ch) == _pg_rows(conn)
    # randomized late data, corrections, same-rank rewrites, lower ranks, deletions
    for round_no in range(3):
        _random_activity(conn, dsn, rng)
        _drive(conn, dsn)
        _export_all(dsn, ch, batch_size=rng.choice((7, 500, 50000)))
        assert _ch_rows(ch) == _pg_rows(conn), f"round {round_no}"
    for sym in ("FXC", "CRC"):
        assert clickhouse.verify_symbol(conn, ch, sym) == []
    # an identical re-export changes nothing: nothing is pending
    assert _export_all(dsn, ch) == 0
    # a corrupted ClickHouse row is drift
    ch.command(
        "ALTER TABLE aggregates UPDATE close = close + 1 WHERE symbol = 'FXC' AND timeframe = '1h'"
        " AND timestamp = (SELECT min(timestamp) FROM aggregates WHERE symbol = 'FXC'"
        " AND timeframe = '1h') SETTINGS mutations_sync = 1"
    )
    drift = clickhouse.verify_symbol(conn, ch, "FXC")
    assert len(drift) == 1 and drift[0]["timeframe"] == "1h"
    assert drift[0]["pg_bars"] == drift[0]["ch_bars"] and not drift[0]["checksum_match"]
    # a bar missing in ClickHouse is drift too (counted)
    ch.command(
        "ALTER TABLE aggregates DELETE WHERE symbol = 'CRC' AND timeframe = '5m'"
        " AND timestamp = (SELECT max(timestamp) FROM aggregates WHERE symbol = 'CRC'"
        " AND timeframe = '5m') SETTINGS mutations_sync = 1"
    )
    drift = clickhouse.verify_symbol(conn, ch, "CRC")
    assert len(drift) == 1 and drift[0]["ch_bars"] == drift[0]["pg_bars"] - 1


def test_version_ranks_and_the_seed_bug(conn, dsn, ch):
    """A higher-ranked source always wins, whatever the timestamps or content; within
    a source a later write wins; re-export keeps the version. The original system's
    version was timestamp-ms for live data and a content hash for historical data,
    so a historical hash could exceed a live version: the seed query must show every
    lower rank's max version below the next rank's min version."""
    h.register(conn, "VER", "crypto_24x7")
    t0 = dt.datetime(2025, 3, 3, tzinfo=UTC)
    bars = {}
    for i, src in enumerate(SOURCES * 5):
        p = 100 + i
        bars[t0 + dt.timedelta(minutes=i)] = Bar1m(p, p + 1, p - 1, p, 1.0, None, None, src)
    # the first minutes get huge, late-in-time-looking content (what a hash might see)
    h.ingest(conn, [("VER", t, b) for t, b in bars.items()])
    queries.sync_export_tasks(conn, "prod", t0)
    _export_all(dsn, ch)
    seed_query = (
        "SELECT source, count() AS count, min(version) AS min_version,"
        " max(version) AS max_version FROM aggregates GROUP BY source ORDER BY source"
    )
    by_source = {r[0]: r[1:] for r in ch.query(seed_query).result_rows}
    ranks = sorted(SOURCES, key=lambda s: dict(zip(SOURCES, range(4), strict=True))[s])
    for lower, higher in zip(ranks, ranks[1:], strict=False):
        assert by_source[lower][2] < by_source[higher][1], (lower, higher, by_source)
    # a later write of a lower-ranked bar never wins; a higher-ranked one always does
    minute = t0
    before = ch.query(
        "SELECT version, source FROM aggregates FINAL WHERE symbol = 'VER'"
        " AND timestamp = {t:DateTime64(3, 'UTC')}",
        parameters={"t": minute.replace(tzinfo=None)},
    ).result_rows[0]
    h.ingest(conn, [("VER", minute, Bar1m(5, 6, 4, 5, 1.0, None, None, "live_aggregated"))])
    _export_all(dsn, ch)
    after = ch.query(
        "SELECT version, source, open FROM aggregates FINAL WHERE symbol = 'VER'"
        " AND timestamp = {t:DateTime64(3, 'UTC')}",
        parameters={"t": minute.replace(tzinfo=None)},
    ).result_rows[0]
    assert after[1] == "live_aggregated" and after[0] > before[0] and after[2] == 5
    # the same bar written again is a no-op: same change_no, so the same version
    h.ingest(conn, [("VER", minute, Bar1m(5, 6, 4, 5, 1.0, None, None, "live_aggregated"))])
    assert queries.export_batch(conn, "VER", queries.export_cursor(conn, "VER"), 10, None) == []
    # the formula itself: rank 0 with the largest change_no stays below rank 1
    v = conn.execute(
        "SELECT tickagg.export_version(0, 281474976710655) < tickagg.export_version(1, 1) AS ok"
    ).fetchone()
    assert v["ok"]


def test_delete_then_lower_rank_reinsert_wins(conn, dsn, ch):
    """A hard-deleted live minute re-inserted by a vendor source: the tombstone
    lifts the new row's version, so FINAL shows the new bar, not the deletion."""
    h.register(conn, "DEL", "crypto_24x7")
    queries.sync_export_tasks(conn, "prod", START)
    t = dt.datetime(2025, 3, 3, 10, tzinfo=UTC)
    h.ingest(conn, [("DEL", t, Bar1m(10, 11, 9, 10, 1.0, None, None, "live_aggregated"))])
    _export_all(dsn, ch)
    conn.execute("DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'DEL'")
    _export_all(dsn, ch)
    assert _ch_rows(ch) == {}
    h.ingest(conn, [("DEL", t, Bar1m(20, 21, 19, 20, 1.0, None, None, "polygon_historical"))])
    _export_all(dsn, ch)
    assert _ch_rows(ch) == _pg_rows(conn) and len(_pg_rows(conn)) == 1


def test_late_committing_writer_is_not_skipped(conn, dsn, ch):
    """change_no comes from a sequence: a writer that took a lower number and commits
    after a higher one was exported must still be exported (export_horizon)."""
    h.register(conn, "RACE", "crypto_24x7")
    queries.sync_export_tasks(conn, "prod", START)
    t = dt.datetime(2025, 3, 3, 10, tzinfo=UTC)
    slow = psycopg.connect(dsn)
    slow.execute(  # takes change_no N, stays open
        "INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close,"
        " source, source_rank) VALUES ('RACE', %s, 1, 1, 1, 1, 'live_aggregated', 30)",
        (t,),
    )
    h.ingest(conn, [("RACE", t + dt.timedelta(minutes=1),
                     Bar1m(2, 2, 2, 2, 1.0, None, None, "live_aggregated"))])  # fmt: skip
    _export_all(dsn, ch)
    assert len(_ch_rows(ch)) == 0  # N+1 is committed but held back behind N
    slow.commit()
    slow.close()
    _export_all(dsn, ch)
    assert _ch_rows(ch) == _pg_rows(conn) and len(_ch_rows(ch)) == 2


CHILD = textwrap.dedent(
    """
    import json, sys
    from runner import clickhouse
    c = clickhouse.connect(sys.argv[1], "tickagg")
    rows = c.query(
        "SELECT symbol, timeframe, toString(timestamp), open, high, low, close, volume, vwap,"
        " trade_count, source FROM aggregates FINAL WHERE is_deleted = 0").result_rows
    dup = c.query("SELECT count() FROM aggregates").result_rows[0][0]
    print(json.dumps({"rows": rows, "raw": dup}))
    """
)


def test_sigkill_between_insert_and_cursor_commit(conn, dsn, tmp_path):
    _setup(conn)
    _drive(conn, dsn)
    url = f"chdb://{tmp_path / 'killed'}"
    env = {**h.cli_env(), "TICKAGG_CLICKHOUSE_URL": url}
    assert h.run_cli(dsn, "--clickhouse-url", url, "migrate").returncode == 0
    proc = subprocess.Popen(
        h.tickagg_cmd(dsn, "export", "--batch-size", "300"),
        cwd=h.ROOT,
        env={**env, clickhouse.CRASH_HOOK_ENV: "60"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "sleeping" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert "sleeping" in seen, seen
    time.sleep(1)  # well inside the sleep after the first batch's insert
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    # the lease of the killed claim must expire before another export may claim
    conn.execute(
        "UPDATE tickagg.data_agg_state SET lease_expires_at = now() - interval '1 second'"
        " WHERE task_kind = 'export' AND status = 'running'"
    )
    cursors = conn.execute(
        "SELECT export_change_no FROM tickagg.data_agg_state WHERE task_kind = 'export'"
    ).fetchall()
    assert all(r["export_change_no"] == 0 for r in cursors)
    done = subprocess.run(
        h.tickagg_cmd(dsn, "export"), cwd=h.ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ver = subprocess.run(
        h.tickagg_cmd(dsn, "verify"), cwd=h.ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert ver.returncode == 0, ver.stdout + ver.stderr
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url], cwd=h.ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    got = json.loads(out.stdout)
    final = {(r[0], r[1], dt.datetime.fromisoformat(r[2])): (*r[3:10], r[10]) for r in got["rows"]}
    assert final == _pg_rows(conn)
    assert got["raw"] > len(final)  # the first batch was inserted twice and de-duplicated


def test_verify_cli_and_lock_message(conn, dsn, ch, ch_url):
    _setup(conn, symbols=(("CLI", "crypto_24x7", 100.0),))
    _drive(conn, dsn)
    _export_all(dsn, ch)
    # this process has the engine open: another process gets a clear error
    res = h.run_cli(dsn, "--clickhouse-url", ch_url, "verify")
    assert res.returncode != 0
    assert "only one process may open a chdb path" in res.stderr
    assert ch_url.removeprefix("chdb://") in res.stderr


def test_daily_coverage_and_rollup_views(conn, dsn, ch):
    _setup(conn, symbols=(("COV", "crypto_24x7", 100.0),))
    _drive(conn, dsn)
    _export_all(dsn, ch)
    _export_all(dsn, ch)  # nothing new; and re-inserting the same rows must not count twice
    rows = ch.query("SELECT * FROM aggregates WHERE symbol = 'COV' AND timeframe = '1m'")
    ch.insert(
        "aggregates", [list(r) for r in rows.result_rows], column_names=list(rows.column_names)
    )
    cov = dict(
        ch.query(
            "SELECT day, uniqExactMerge(bars) FROM daily_coverage WHERE symbol = 'COV'"
            " AND timeframe = '1m' GROUP BY day"
        ).result_rows
    )
    pg = {
        r["day"]: r["n"]
        for r in conn.execute(
            "SELECT (ts_utc AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
            " FROM tickagg.data_bars WHERE canonical_symbol = 'COV' GROUP BY 1"
        )
    }
    assert cov == pg
    ch.command("SYSTEM REFRESH VIEW daily_rollup")
    ch.command("SYSTEM WAIT VIEW daily_rollup")
    roll = {
        r[0]: r[1:]
        for r in ch.query(
            "SELECT day, minutes, open, close FROM daily_rollup WHERE symbol = 'COV'"
        ).result_rows
    }
    pg1d = {
        r["day"]: (r["source_candles"], r["open"], r["close"])
        for r in conn.execute(
            "SELECT (ts_utc AT TIME ZONE 'UTC')::date AS day, source_candles, open, close"
            " FROM tickagg.derived_data_bars WHERE canonical_symbol = 'COV' AND timeframe = '1d'"
            " AND deleted_at IS NULL"
        )
    }
    assert roll and {d: v for d, v in roll.items() if d in pg1d} == pg1d


def test_migrate_records_clickhouse_files(ch):
    files = dict(ch.query("SELECT path, sha256 FROM tickagg_schema_files FINAL").result_rows)
    assert set(files) == {p.name for p in clickhouse.ddl_files()}
    assert clickhouse.migrate(ch) == {"clickhouse_files_applied": []}


def test_runner_without_clickhouse_backs_off(conn, dsn):
    """No ClickHouse URL: export tasks fail transiently (backoff), rollups still run."""
    _setup(conn, symbols=(("NOCH", "crypto_24x7", 100.0),))
    from runner.loop import Runner, RunnerConfig

    stats = Runner(RunnerConfig(dsn=dsn, until_idle=True, poll_max=0.5)).run(install_signals=False)
    assert stats.tasks_failed >= 1
    row = conn.execute(
        "SELECT status, transient_fail_streak, last_error FROM tickagg.data_agg_state"
        " WHERE task_kind = 'export'"
    ).fetchone()
    assert row["status"] == "idle" and row["transient_fail_streak"] == 1
    assert "ClickHouse" in row["last_error"]


def test_runner_exports(conn, dsn, ch_url):
    _setup(conn, symbols=(("RUN", "crypto_24x7", 100.0),))
    from runner.loop import Runner, RunnerConfig

    database = f"r_{uuid.uuid4().hex[:8]}"
    client = clickhouse.connect(ch_url, database)
    clickhouse.migrate(client)
    cfg = RunnerConfig(
        dsn=dsn, until_idle=True, poll_max=0.5, clickhouse_url=ch_url, clickhouse_database=database
    )
    Runner(cfg).run(install_signals=False)
    # the export may have run before the last rollups: run until nothing is pending
    for _ in range(3):
        conn.execute(
            "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'export'"
        )
        Runner(cfg).run(install_signals=False)
    assert _ch_rows(client) == _pg_rows(conn)
    assert clickhouse.verify_symbol(conn, client, "RUN") == []
    backlog = conn.execute("SELECT backlog FROM tickagg.export_backlog").fetchone()["backlog"]
    assert backlog == 0


def test_demo_exports_and_verifies(tmp_path):
    """`tickagg demo` ends with an export to its embedded ClickHouse and a clean verify."""
    res = subprocess.run(
        [str(h.TICKAGG), "demo", "--weeks", "1", "--data-dir", str(tmp_path / "pg")],
        cwd=h.ROOT, env=h.cli_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "0 day(s) with drift" in res.stdout, res.stdout[-2000:]
    lines = [ln.split() for ln in res.stdout.splitlines() if " bars  version " in ln]
    mins = [int(ln[-3]) for ln in lines]
    maxs = [int(ln[-1]) for ln in lines]
    assert len(lines) >= 2 and all(hi < lo for hi, lo in zip(maxs, mins[1:], strict=False))
