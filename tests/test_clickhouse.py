"""ClickHouse mirror (issue 6) against the real embedded engine (chdb).

One engine per test process: `ch_url` (conftest.py) opens one chdb directory for the whole
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
import threading
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


def _export_all(
    dsn, client, batch_size=50000, wait_seconds=clickhouse.ONE_SHOT_EXPORT_WAIT_SECONDS
) -> int:
    from runner import db

    total = 0
    with db.make_pool(dsn, max_size=2) as pool:
        with pool.connection() as conn:
            syms = queries.export_symbols(conn)
        for s in syms:
            total += clickhouse.export_once(pool, client, s, batch_size, wait_seconds=wait_seconds)[
                "rows"
            ]
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
    # the horizon holds N+1 back while N is open, however long the export waits for
    # N (30 s by default: its waiting out is not what this test is about)
    _export_all(dsn, ch, wait_seconds=2)
    assert len(_ch_rows(ch)) == 0  # N+1 is committed but held back behind N
    slow.commit()
    slow.close()
    _export_all(dsn, ch)
    assert _ch_rows(ch) == _pg_rows(conn) and len(_ch_rows(ch)) == 2


def _run_due_exports(conn, client) -> int:
    """What the runner does with every due export task: claim, export_step, finish."""
    runs = 0
    while tasks := conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
        " WHERE task_kind = 'export'"
    ).fetchall():
        for task in tasks:
            with conn.transaction():
                res = clickhouse.export_step(
                    conn, client, task["canonical_symbol"], task["claim_token"], 50000
                )
                h._finish(
                    conn,
                    task,
                    {
                        "cursor_from": task["cursor_ts"],
                        "cursor_to": dt.datetime.now(UTC),
                        "bars_written": res["rows"],
                        "continue": res["continue"],
                    },  # fmt: skip
                )
            runs += 1
    return runs


@pytest.mark.parametrize("held_by", ["another symbol", "the same symbol"])
def test_an_export_cut_short_by_an_open_writer_comes_due_again_by_itself(conn, dsn, ch, held_by):
    """An export task due (not running) runs while a writer is still open: of
    another symbol, holding a lower change number (the horizon stops below this
    symbol's committed change), or of this symbol (its change is not readable yet).
    Once the writer commits, the due exports alone (nothing woken by hand) bring
    ClickHouse level. Before, the run left the task asleep until the idle recheck
    (a day) with the change unexported."""
    h.register(conn, "RACE", "crypto_24x7")
    h.register(conn, "OTHER", "crypto_24x7")
    queries.sync_export_tasks(conn, "prod", START)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET run_interval = '1 second' WHERE task_kind = 'export'"
    )
    t = dt.datetime(2025, 3, 3, 10, tzinfo=UTC)
    bar = Bar1m(2, 2, 2, 2, 1.0, None, None, "live_aggregated")
    h.ingest(conn, [("RACE", t, bar)])
    time.sleep(1.1)
    assert _run_due_exports(conn, ch) >= 1
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'export'")
    slow = psycopg.connect(dsn)
    slow.execute(
        "INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close,"
        " source, source_rank) VALUES (%s, %s, 1, 1, 1, 1, 'live_aggregated', 30)",
        ("OTHER" if held_by == "another symbol" else "RACE", t + dt.timedelta(minutes=1)),
    )
    if held_by == "another symbol":
        h.ingest(conn, [("RACE", t + dt.timedelta(minutes=2), bar)])  # above the writer's number
    _run_due_exports(conn, ch)
    slow.commit()
    slow.close()
    time.sleep(1.1)
    _run_due_exports(conn, ch)
    assert _ch_rows(ch) == _pg_rows(conn)
    assert len(_ch_rows(ch)) == (3 if held_by == "another symbol" else 2)


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


def test_verify_says_when_there_is_nothing_to_compare_or_no_tables(conn, dsn, tmp_path):
    """verify with nothing exported printed "verified 0 symbols" and exit 0; before
    the ClickHouse tables existed it printed an 18-frame traceback."""
    url = f"chdb://{tmp_path / 'empty'}"
    res = h.run_cli(dsn, "--clickhouse-url", url, "verify")
    assert res.returncode == 1 and "nothing to verify" in res.stderr, res.stderr
    h.register(conn, "VNT", "crypto_24x7")
    queries.sync_export_tasks(conn, "prod", START)
    res = h.run_cli(dsn, "--clickhouse-url", url, "verify")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "tickagg migrate --clickhouse-url" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_verify_with_no_bar_on_either_side_says_nothing_was_compared(conn, dsn, ch_url):
    """Export tasks but no bar in PostgreSQL or ClickHouse: verify printed "verified 1
    symbols: 0 day(s) with drift" and exit 0, as if all had been checked."""
    from click.testing import CliRunner

    from runner.cli import cli

    database = f"t_{uuid.uuid4().hex[:10]}"
    ch = clickhouse.connect(ch_url, database)
    clickhouse.migrate(ch)
    h.register(conn, "VNB", "crypto_24x7")
    queries.sync_export_tasks(conn, "prod", START)
    args = ["--dsn", dsn, "--clickhouse-url", ch_url, "--clickhouse-database", database]
    res = CliRunner().invoke(cli, [*args, "verify"])  # in process: it holds the engine
    assert res.exit_code == 1, res.output
    assert "nothing compared" in res.output and "verified" not in res.output, res.output
    # with bars on both sides it compares them and passes
    h.insert_bars(conn, "VNB", random_bars("crypto_24x7", D(2025, 3, 3), D(2025, 3, 3),
                                           random.Random(3)))  # fmt: skip
    _export_all(dsn, ch)
    res = CliRunner().invoke(cli, [*args, "verify"])
    assert res.exit_code == 0 and "verified 1 symbols: 0 day(s) with drift" in res.output, (
        res.output
    )


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


def _counts_by_final(client, symbol) -> dict:
    return {
        (tf, day): n
        for tf, day, n in client.query(
            "SELECT timeframe, toDate(timestamp) AS day, count() FROM aggregates FINAL"
            " WHERE symbol = {s:String} AND is_deleted = 0 GROUP BY timeframe, day",
            parameters={"s": symbol},
        ).result_rows
    }


def _daily_bar_counts(client, symbol) -> dict:
    clickhouse.refresh_views(client, ["daily_bar_counts_mv"])
    return {
        (tf, day): n
        for tf, day, n in client.query(
            "SELECT timeframe, day, bars FROM daily_bar_counts WHERE symbol = {s:String}",
            parameters={"s": symbol},
        ).result_rows
    }


def test_daily_bar_counts_exact_after_corrections_and_deletions(conn, dsn, ch):
    """daily_bar_counts (refreshable, from aggregates FINAL) equals a GROUP BY over
    aggregates FINAL and PostgreSQL's bars after re-exports, corrections and deletions."""
    _setup(conn, symbols=(("DBC", "crypto_24x7", 100.0),))
    _drive(conn, dsn)
    _export_all(dsn, ch)
    counts = _daily_bar_counts(ch, "DBC")
    assert counts and counts == _counts_by_final(ch, "DBC")
    pg = {
        r["day"]: r["n"]
        for r in conn.execute(
            "SELECT (ts_utc AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
            " FROM tickagg.data_bars WHERE canonical_symbol = 'DBC' GROUP BY 1"
        )
    }
    assert {d: n for (tf, d), n in counts.items() if tf == "1m"} == pg
    # the same rows inserted again (a re-export after a crash) and corrections of
    # existing minutes by a higher-ranked source: new rows in the table, same counts
    rows = ch.query("SELECT * FROM aggregates WHERE symbol = 'DBC'")
    ch.insert(
        "aggregates", [list(r) for r in rows.result_rows], column_names=list(rows.column_names)
    )
    minutes = [
        r["ts_utc"]
        for r in conn.execute(
            "SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = 'DBC'"
            " ORDER BY ts_utc LIMIT 30"
        )
    ]
    h.ingest(conn, [("DBC", t, Bar1m(7, 8, 6, 7, 1.0, None, None, "live_aggregated"))
                    for t in minutes])  # fmt: skip
    _drive(conn, dsn)
    assert _export_all(dsn, ch) > 0
    raw_1m = ch.query(
        "SELECT count() FROM aggregates WHERE symbol = 'DBC' AND timeframe = '1m'"
    ).result_rows[0][0]
    assert raw_1m > sum(pg.values())  # an insert-time count would be too high
    assert _daily_bar_counts(ch, "DBC") == _counts_by_final(ch, "DBC") == counts
    # deletions: 1m minutes of the first day and the derived bars built on them
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'DBC' AND ts_utc = ANY(%s)",
        (minutes[:12],),
    )
    _drive(conn, dsn)
    assert _export_all(dsn, ch) > 0
    after = _daily_bar_counts(ch, "DBC")
    assert after == _counts_by_final(ch, "DBC")
    day0 = minutes[0].astimezone(UTC).date()
    assert after[("1m", day0)] == counts[("1m", day0)] - 12
    assert _ch_rows(ch) == _pg_rows(conn)
    # the gap query reads the table; a full 24x7 day has 1440 minutes
    gaps = clickhouse.gap_days(ch, "DBC")
    assert gaps == sorted((d, n) for (tf, d), n in after.items() if tf == "1m" and n < 1440)
    assert (day0, after[("1m", day0)]) in gaps


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


# --- external data (seeds/001) ------------------------------------------------------


def _write(path, text: str):
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def _final(client, table: str, order: str) -> list:
    # table and order are the test's own constants
    return client.query(f"SELECT * FROM {table} FINAL ORDER BY {order}").result_rows  # noqa: S608


def _raw_count(client, table: str) -> int:
    return client.query(f"SELECT count() FROM {table}").result_rows[0][0]  # noqa: S608


def test_external_ingest_good_duplicate_and_malformed(ch, tmp_path):
    from runner import external

    external.set_ttl(ch, 3650)  # the 2025 observations below are past the default 365 days

    fred = _write(
        tmp_path / "fred.csv",
        """
        series_id,value,observation_date,source,collected_at
        GDP,27000.5,2025-01-01,fred,2025-03-01T10:00:00Z
        UNRATE,4.1,2025-02-01,fred,2025-03-01T10:00:00Z
        GDP,27000.5,2025-01-01,fred,2025-03-01T10:00:00Z
        GDP,abc,2025-01-01,fred,2025-03-01T10:00:00Z
        CPI,3.0,2025-02-30,fred,2025-03-01T10:00:00Z
        CPI,3.0,2025-02-01,fred
        ,3.0,2025-02-01,fred,2025-03-01T10:00:00Z
        UNRATE,4.2,2025-02-01,fred,2025-03-02T10:00:00Z
        """,
    )
    res = external.ingest_file(ch, "external_fred_economic", fred)
    assert res["rows_total"] == 8 and res["rows_inserted"] == 4 and res["rows_rejected"] == 4
    reasons = {r["line_no"]: r["reason"] for r in res["rejects"]}
    assert reasons[5].startswith("value: not a number")
    assert reasons[6].startswith("observation_date: not a date")
    assert reasons[7] == "4 fields, header has 5"
    assert reasons[8] == "series_id: required"
    rows = _final(ch, "external_fred_economic", "series_id")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("GDP", 27000.5, D(2025, 1, 1)),
        ("UNRATE", 4.2, D(2025, 2, 1)),  # the later collection replaced the earlier one
    ]
    # re-ingesting the same file changes nothing in FINAL
    assert external.ingest_file(ch, "external_fred_economic", fred)["rows_inserted"] == 4
    assert len(_final(ch, "external_fred_economic", "series_id")) == 2
    assert _raw_count(ch, "external_fred_economic") > 2

    fg = _write(
        tmp_path / "fg.jsonl",
        """
        {"value": 25, "classification": "Extreme Fear", "sentiment_score": -50, "index_timestamp": 1740787200, "source": "alternative.me", "collected_at": "2025-03-01T00:05:00Z"}
        {"value": 25, "classification": "Extreme Fear", "sentiment_score": -50, "index_timestamp": 1740787200, "source": "alternative.me", "collected_at": "2025-03-01T00:05:00Z"}
        {"value": 101, "classification": "?", "sentiment_score": 0, "index_timestamp": 1740873600, "source": "alternative.me", "collected_at": "2025-03-02T00:05:00Z"}
        {"value": 60, "classification": "Greed", "sentiment_score": 20, "index_timestamp": "yesterday", "source": "alternative.me", "collected_at": "2025-03-02T00:05:00Z"}
        not json

        {"value": 60, "classification": "Greed", "sentiment_score": 20, "index_timestamp": "2025-03-02T00:00:00Z", "source": "alternative.me", "collected_at": "2025-03-02T00:05:00Z", "extra": 1}
        [1, 2]
        {"value": 61, "classification": "Greed", "sentiment_score": 22, "index_timestamp": "2025-03-02T00:00:00Z", "source": "alternative.me", "collected_at": "2025-03-02T00:05:00Z"}
        """,  # noqa: E501
    )
    res = external.ingest_file(ch, "external_fear_greed_index", fg)
    assert res["rows_inserted"] == 3 and res["rows_rejected"] == 5
    reasons = {r["line_no"]: r["reason"] for r in res["rejects"]}
    assert reasons[3].startswith("value: above 100")
    assert reasons[4].startswith("index_timestamp: not an ISO 8601 timestamp")
    assert reasons[5].startswith("not JSON")
    assert reasons[7] == "unknown field(s): extra"
    assert reasons[8] == "not a JSON object"
    rows = _final(ch, "external_fear_greed_index", "index_timestamp")
    assert [(r[0], r[1], r[3].replace(tzinfo=None)) for r in rows] == [
        (25, "Extreme Fear", dt.datetime(2025, 3, 1)),
        (61, "Greed", dt.datetime(2025, 3, 2)),
    ]

    com = _write(
        tmp_path / "com.csv",
        """
        symbol,name,currency,price,previous_close,change,change_percent,volume,source,collected_at
        GC=F,Gold,USD,2900.5,2890.0,10.5,0.36,120000,yahoo,2025-03-01T10:00:00Z
        GC=F,Gold,USD,2900.5,2890.0,10.5,0.36,120000,yahoo,2025-03-01T10:00:00Z
        CL=F,Crude Oil,USD,70.1,,,,,yahoo,2025-03-01T10:00:00Z
        CL=F,Crude Oil,USD,-1,70,,,,yahoo,2025-03-01T11:00:00Z
        CL=F,Crude Oil,USD,nan,70,,,,yahoo,2025-03-01T11:00:00Z
        """,
    )
    res = external.ingest_file(ch, "external_commodity_prices", com)
    assert res["rows_inserted"] == 3 and res["rows_rejected"] == 2
    assert [r["line_no"] for r in res["rejects"]] == [5, 6]
    assert "price: below 0" in res["rejects"][0]["reason"]
    assert "price: not a finite number" in res["rejects"][1]["reason"]
    rows = _final(ch, "external_commodity_prices", "symbol")
    assert [(r[0], r[3], r[4]) for r in rows] == [("CL=F", 70.1, None), ("GC=F", 2900.5, 2890.0)]

    cal = _write(
        tmp_path / "cal.csv",
        """
        date,time,currency,event,forecast,previous,actual,impact,source,collected_at
        2025-03-07,13:30,USD,Non-Farm Payrolls,160K,143K,,High,forexfactory,2025-03-06T00:00:00Z
        2025-03-07,13:30,USD,Non-Farm Payrolls,160K,143K,151K,high,forexfactory,2025-03-07T14:00:00Z
        2025-03-07,13:30,USD,Unemployment Rate,4.0%,4.0%,,extreme,forexfactory,2025-03-06T00:00:00Z
        """,
    )
    res = external.ingest_file(ch, "external_economic_calendar", cal)
    assert res["rows_inserted"] == 2 and res["rejects"][0]["line_no"] == 4
    assert res["rejects"][0]["reason"].startswith("impact: expected one of")
    rows = _final(ch, "external_economic_calendar", "event")
    assert [(r[3], r[6], r[7]) for r in rows] == [("Non-Farm Payrolls", "151K", "high")]

    crypto = _write(
        tmp_path / "crypto.jsonl",
        """
        {"coin_id": "bitcoin", "name": "Bitcoin", "symbol": "btc", "price_usd": 90000, "price_change_24h": -1.5, "market_cap_rank": 1, "sentiment_votes_up": 70.5, "community_score": null, "twitter_followers": 6900000, "reddit_subscribers": 7000000, "source": "coingecko", "collected_at": "2025-03-01T10:00:00Z"}
        {"coin_id": "bitcoin", "name": "Bitcoin", "symbol": "btc", "price_usd": 90000, "price_change_24h": -1.5, "market_cap_rank": 1, "sentiment_votes_up": 70.5, "community_score": null, "twitter_followers": 6900000, "reddit_subscribers": 7000000, "source": "coingecko", "collected_at": "2025-03-01T10:00:00Z"}
        {"coin_id": "eth", "name": "Ethereum", "symbol": "eth", "price_usd": 2200, "market_cap_rank": 2.5, "source": "coingecko", "collected_at": "2025-03-01T10:00:00Z"}
        {"coin_id": "eth", "name": "Ethereum", "symbol": "eth", "price_usd": 2200, "sentiment_votes_up": 140, "source": "coingecko", "collected_at": "2025-03-01T10:00:00Z"}
        """,  # noqa: E501
    )
    res = external.ingest_file(ch, "external_crypto_sentiment", crypto)
    assert res["rows_inserted"] == 2 and [r["line_no"] for r in res["rejects"]] == [3, 4]
    assert res["rejects"][0]["reason"].startswith("market_cap_rank: not an integer")
    assert res["rejects"][1]["reason"].startswith("sentiment_votes_up: above 100")
    assert len(_final(ch, "external_crypto_sentiment", "coin_id")) == 1

    kept = ch.query(
        "SELECT table_name, file_name, line_no FROM external_rejects ORDER BY table_name, line_no"
    ).result_rows
    assert ("external_fred_economic", "fred.csv", 5) in kept
    assert ("external_fear_greed_index", "fg.jsonl", 8) in kept
    assert len(kept) == 4 + 4 + 5 + 2 + 1 + 2  # fred twice


def test_ingest_external_cli_exit_codes(dsn, tmp_path):
    url = f"chdb://{tmp_path / 'ext'}"
    day = dt.date.today() - dt.timedelta(days=3)  # within the default 365-day retention
    f = _write(
        tmp_path / "fg.csv",
        f"""
        value,classification,sentiment_score,index_timestamp,source,collected_at
        40,Fear,-20,{day}T00:00:00Z,alternative.me,{day}T00:05:00Z
        400,Fear,-20,{day}T00:01:00Z,alternative.me,{day}T00:06:00Z
        """,
    )
    assert h.run_cli(dsn, "--clickhouse-url", url, "migrate").returncode == 0
    res = h.run_cli(dsn, "--clickhouse-url", url, "ingest", "external",
                    "external_fear_greed_index", f)  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "1 inserted, 1 rejected" in res.stdout and "line 3: value: above 100" in res.stdout
    bad_header = _write(tmp_path / "bad.csv", "series_id,value\nGDP,1\n")
    res = h.run_cli(dsn, "--clickhouse-url", url, "ingest", "external",
                    "external_fred_economic", bad_header)  # fmt: skip
    assert res.returncode == 2 and "missing ['observation_date'" in res.stderr, res.stderr
    res = h.run_cli(dsn, "--clickhouse-url", url, "ingest", "external", "aggregates", f)
    assert res.returncode == 2 and "unknown external table" in res.stderr


def test_sessions_snapshot_matches_calendar_sessions(conn, ch):
    from runner import external

    def direct(at):  # every calendar's session covering `at`, straight from calendar_sessions
        out = []
        for c in conn.execute("SELECT calendar_code FROM tickagg.market_calendars ORDER BY 1"):
            sessions = conn.execute(
                "SELECT open_utc, close_utc, is_trading FROM tickagg.calendar_sessions(%s, %s, %s)",
                (c["calendar_code"], at - dt.timedelta(days=3), at + dt.timedelta(days=3)),
            ).fetchall()
            if any(s["is_trading"] and s["open_utc"] <= at < s["close_utc"] for s in sessions):
                out.append(c["calendar_code"])
        return out

    wed = dt.datetime(2025, 3, 5, 15, 0, tzinfo=UTC)  # NY 10:00 EST, Kolkata 20:30
    assert external.sessions_at(conn, wed)["active_sessions"] == [
        "crypto_24x7", "forex_24x5", "us_equity"]  # fmt: skip
    sat = dt.datetime(2025, 3, 8, 12, 0, tzinfo=UTC)
    assert external.sessions_at(conn, sat)["active_sessions"] == ["crypto_24x7"]
    nse = dt.datetime(2025, 3, 5, 5, 0, tzinfo=UTC)  # Kolkata 10:30
    assert "nse_equity" in external.sessions_at(conn, nse)["active_sessions"]
    rng = random.Random(11)
    instants = [wed, sat, nse, dt.datetime(2025, 3, 7, 22, 0, tzinfo=UTC)]
    instants += [START + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 400)) for _ in range(40)]
    for at in instants:
        snap = external.sessions_at(conn, at)
        assert snap["active_sessions"] == direct(at), at
        assert snap["active_sessions_count"] == len(snap["active_sessions"])
    external.set_ttl(ch, 3650)  # keep the 2025 snapshot (default TTL: 365 days)
    snap = external.sessions_snapshot(conn, ch, wed)
    assert snap["liquidity_level"] == "high"
    external.sessions_snapshot(conn, ch, wed)  # the same instant again: one row in FINAL
    rows = _final(ch, "external_market_sessions", "collected_at")
    assert [r[:3] for r in rows] == [(3, ["crypto_24x7", "forex_24x5", "us_equity"], "high")]
    now_snap = external.sessions_snapshot(conn, ch)  # PostgreSQL's now()
    assert now_snap["active_sessions"] == direct(now_snap["collected_at"].replace(tzinfo=UTC))


def test_external_rows_past_the_retention_or_with_odd_text_are_rejected(ch, tmp_path):
    """A row collected longer ago than the table's TTL was reported as inserted and
    vanished at once; objects, arrays and NUL bytes in text fields were stored as
    Python reprs. Each is a reject with its line and reason; good rows land."""
    from runner import external

    now = dt.datetime.now(UTC).replace(microsecond=0)
    old, recent = now - dt.timedelta(days=400), now - dt.timedelta(days=2)

    def reading(value, at, source="alternative.me"):
        stamp = at.isoformat()
        return {"value": value, "classification": "fear", "sentiment_score": -20,
                "index_timestamp": stamp, "source": source, "collected_at": stamp}  # fmt: skip

    lines = [
        reading(40, recent),
        reading(41, old),
        reading(42, recent, {"a": 1}),
        reading(43, recent, ["x"]),
        reading(44, recent, "bad\u0000name"),
    ]
    path = tmp_path / "fg.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = external.ingest_file(ch, "external_fear_greed_index", str(path))
    reasons = {r["line_no"]: r["reason"] for r in res["rejects"]}
    assert res["rows_inserted"] == 1 and set(reasons) == {2, 3, 4, 5}, reasons
    assert "older than the 365-day retention" in reasons[2]
    assert reasons[3].startswith("source: an object or array")
    assert reasons[4].startswith("source: an object or array")
    assert reasons[5].startswith("source: contains a NUL byte")
    assert [r[0] for r in _final(ch, "external_fear_greed_index", "value")] == [40]
    # with a longer retention set first, the old row lands and stays
    external.set_ttl(ch, 1000)
    res = external.ingest_file(ch, "external_fear_greed_index", str(path))
    assert res["rows_inserted"] == 2
    ch.command("OPTIMIZE TABLE external_fear_greed_index FINAL")
    assert sorted(r[0] for r in _final(ch, "external_fear_greed_index", "value")) == [40, 41]


def test_external_ttl_setting(ch):
    from runner import external

    assert "INTERVAL 365 DAY" in ch.command("SHOW CREATE TABLE external_fred_economic").replace(
        "toIntervalDay(365)", "INTERVAL 365 DAY"
    )
    # an observation collected more than a year ago is already past the default TTL
    cols = ["series_id", "value", "observation_date", "source", "collected_at"]
    now = dt.datetime.now(UTC).replace(tzinfo=None)
    old, new = now - dt.timedelta(days=400), now - dt.timedelta(days=1)
    rows = [["OLD", 1.0, old.date(), "t", old], ["NEW", 1.0, new.date(), "t", new]]
    ch.insert("external_fred_economic", rows, column_names=cols)
    ch.command("OPTIMIZE TABLE external_fred_economic FINAL")
    assert [r[0] for r in _final(ch, "external_fred_economic", "series_id")] == ["NEW"]
    assert set(external.set_ttl(ch, 30)) == set(external.TTL_TABLES)
    for t in external.TTL_TABLES:
        assert "toIntervalDay(30)" in ch.command(f"SHOW CREATE TABLE {t}"), t
    for bad in (0, "30; DROP TABLE x", 1.5, True):
        with pytest.raises(clickhouse.TickaggError):
            external.set_ttl(ch, bad)


def test_cluster_ddl_renders_and_parses(ch):
    plain = clickhouse.render()
    assert [s for _f, s in plain] == [
        s for p in clickhouse.ddl_files() for s in clickhouse._statements(p.read_text())
    ]
    rendered = clickhouse.render(cluster="prod_cluster")
    assert len(rendered) == len(plain) + 1
    for name, stmt in rendered:
        if stmt.startswith("CREATE"):
            assert " ON CLUSTER prod_cluster" in stmt.splitlines()[0], (name, stmt)
        # ClickHouse's own parser (the embedded engine has no cluster to run it on)
        formatted = ch.query("SELECT formatQuery({q:String})", parameters={"q": stmt})
        assert "CREATE" in formatted.result_rows[0][0]
        if " ENGINE = " in stmt and "Distributed" not in stmt:
            assert "ENGINE = Replicated" in stmt, stmt
    text = "\n".join(s for _f, s in rendered)
    assert text.count("ReplicatedReplacingMergeTree(") == 8  # ledger, aggregates, 6 external
    assert "ENGINE = Distributed(prod_cluster, currentDatabase(), aggregates_local," in text
    mv = next(s for _f, s in rendered if "daily_coverage_mv" in s)
    assert "FROM aggregates_local" in mv  # insert-time view fires on the local table
    rollup = next(s for _f, s in rendered if "daily_rollup" in s)
    assert "FROM aggregates FINAL" in rollup  # the refresh reads every shard
    counts = next(s for _f, s in rendered if "daily_bar_counts_mv" in s)
    assert "FROM aggregates FINAL" in counts
    with pytest.raises(clickhouse.ClickHouseError):
        clickhouse.render(cluster="x; DROP")
    res = subprocess.run(
        [str(h.TICKAGG), "clickhouse-ddl", "--cluster", "prod_cluster"],
        cwd=h.ROOT, env=h.cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0 and "ReplicatedReplacingMergeTree" in res.stdout, res.stderr


def test_tick_minutes_patched_by_late_ticks_win_in_clickhouse(conn, dsn, ch):
    """A live_aggregated minute rebuilt from late ticks (live_gap_filled, a lower
    rank) must still replace the old row in aggregates FINAL."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    conn.execute("SELECT tickagg.register_symbol('TCK', 'crypto_24x7', p_source_kind => 'ticks')")
    h.sync(conn, start)
    h.rollups_only(conn)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = true WHERE task_kind = 'ticks_1m'")
    queries.sync_export_tasks(conn, "prod", start)
    ticks = [("TCK", start + dt.timedelta(minutes=m, seconds=s), None, None, 100.0 + m, 1.0)
             for m in range(60) for s in (5, 40)]  # fmt: skip
    queries.ingest_ticks(conn, ticks)
    _drive(conn, dsn)
    _export_all(dsn, ch)
    late = [("TCK", start + dt.timedelta(minutes=7, seconds=50), None, None, 250.0, 3.0)]
    queries.ingest_ticks(conn, late)
    _drive(conn, dsn)
    bar = conn.execute(
        "SELECT source, source_rank, high FROM tickagg.data_bars WHERE ts_utc = %s",
        (start + dt.timedelta(minutes=7),),
    ).fetchone()
    assert (bar["source"], bar["source_rank"], bar["high"]) == ("live_gap_filled", 30, 250.0)
    _export_all(dsn, ch)
    assert _ch_rows(ch) == _pg_rows(conn)
    assert clickhouse.verify_symbol(conn, ch, "TCK") == []


def test_one_shot_export_waits_for_transactions_open_when_it_started(conn, dsn, ch):
    """An open transaction anywhere in the cluster holds the export horizon back
    (it might hold a change number). A one-shot export must still include every
    change committed before it started: it waits for such transactions to end,
    and says so when one outlives its patience instead of silently stopping short."""
    from runner import db

    _setup(conn)
    _drive(conn, dsn)
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1")  # a transaction is open now and holds a virtual xid
        done = {}

        def export():
            with db.make_pool(dsn, max_size=2) as pool:
                done["fxc"] = clickhouse.export_once(pool, ch, "FXC", 50000)

        worker = threading.Thread(target=export)
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), (
            "the export returned while a transaction that started before it was open"
        )
        other.commit()
        worker.join(60)
    assert done["fxc"]["complete"] and done["fxc"]["rows"] > 0
    with db.make_pool(dsn, max_size=2) as pool:
        crc = clickhouse.export_once(pool, ch, "CRC", 50000)
    assert crc["complete"]
    assert _ch_rows(ch) == _pg_rows(conn)

    # a transaction that outlives the export's patience: the export stops short and says so
    h.insert_bars(
        conn, "FXC", {dt.datetime(2025, 3, 7, 12, 0, tzinfo=UTC): Bar1m(1.2, 1.2, 1.2, 1.2, 5.0)}
    )
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1")
        with db.make_pool(dsn, max_size=2) as pool:
            short = clickhouse.export_once(pool, ch, "FXC", 50000, wait_seconds=0.5)
        assert not short["complete"]


def test_external_bytes_that_are_not_utf8_reject_their_line_only(ch, tmp_path):
    """Found by the chaos suite: random bytes as an external file, or a 0xff byte
    after good rows, raised UnicodeDecodeError (a traceback, exit 1, nothing landed).
    A line with such bytes is rejected with its line number; the good lines around it
    land; a header that does not decode is a header that does not match (exit 2)."""
    from runner import external
    from runner.errors import InputFormatError

    external.set_ttl(ch, 3650)
    good = "25,Extreme Fear,-50,2025-03-01T00:00:00Z,alternative.me,2025-03-01T00:05:00Z\n"
    later = "61,Greed,22,2025-03-02T00:00:00Z,alternative.me,2025-03-02T00:05:00Z\n"
    header = "value,classification,sentiment_score,index_timestamp,source,collected_at\n"
    csv_path = tmp_path / "fg.csv"
    csv_path.write_bytes((header + good).encode() + b"\xff\xfe garbage,1\n" + later.encode())
    res = external.ingest_file(ch, "external_fear_greed_index", str(csv_path))
    assert res["rows_inserted"] == 2 and res["rejects"] == [
        {"line_no": 3, "reason": "not UTF-8 text"}
    ]
    jsonl = tmp_path / "fg.jsonl"
    obj = {"value": 30, "classification": "Fear", "sentiment_score": -20, "source": "x",
           "index_timestamp": "2025-03-03T00:00:00Z",
           "collected_at": "2025-03-03T00:05:00Z"}  # fmt: skip
    jsonl.write_bytes(b'{"value": \xff}\n' + json.dumps(obj).encode() + b"\n")
    res = external.ingest_file(ch, "external_fear_greed_index", str(jsonl))
    assert res["rows_inserted"] == 1 and [r["line_no"] for r in res["rejects"]] == [1]
    assert len(_final(ch, "external_fear_greed_index", "index_timestamp")) == 3
    binary = tmp_path / "random.csv"
    binary.write_bytes(bytes(random.Random(9).randrange(256) for _ in range(4096)))
    with pytest.raises(InputFormatError):
        external.ingest_file(ch, "external_fear_greed_index", str(binary))
