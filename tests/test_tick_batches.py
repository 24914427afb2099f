"""Batches of ticks_1m tasks (agg_claim_batch + agg_run_task_batch): live symbols'
closed minutes aggregated in one statement equal the tick oracle (so the per-task
path), late ticks included; a SIGKILL during batches loses and duplicates nothing.

Live: the symbols start 12 minutes ago, so their cursors stay within the 16
minutes that make a ticks_1m task a batch's (a replay of older ticks runs alone).
Minutes close on the data rule only (a 100-year delay): a tick of a later minute
closes them, as in tests/test_ticks_crash.py."""

from __future__ import annotations

import datetime as dt
import random

import helpers as h
from test_batch import sigkill_runner_once_working
from test_ticks import ingest, ingest_in_batches
from tick_oracle import expected_1m, random_ticks, shuffled_arrival

from runner.loop import Runner, RunnerConfig

UTC = dt.UTC


def setup(conn, n: int, seed: int):
    rng = random.Random(seed)
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=12)
    kinds = {f"TB{i}": ("last", "mid")[i % 2] for i in range(n)}
    for sym, kind in kinds.items():
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks',"
            " p_price_kind => %s)",
            (sym, kind),
        )
    h.sync(conn, start)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false"
        " WHERE task_kind NOT IN ('ticks_1m', 'rollup')"
    )
    for sym in kinds:
        conn.execute("SELECT tickagg.agg_task_set_delay(%s, '100 years', 'ticks_1m')", (sym,))
    ticks = sorted(
        (t for i, sym in enumerate(kinds) for t in random_ticks(rng, sym, kinds[sym], start, 12,
                                                                 100.0 + i)),
        key=lambda t: t.ts,
    )  # fmt: skip
    return rng, kinds, ticks


def assert_closed_minutes_match(conn, arrivals, kinds) -> int:
    """Every minute behind its task's cursor has exactly the oracle's bar; returns
    how many were compared."""
    cursor = {
        r["canonical_symbol"]: r["last_agg_bar_ts_utc"]
        for r in conn.execute(
            "SELECT canonical_symbol, last_agg_bar_ts_utc FROM tickagg.data_agg_state"
            " WHERE task_kind = 'ticks_1m'"
        )
    }
    exp = {k: v for k, v in expected_1m(arrivals, kinds).items() if k[1] < cursor[k[0]]}
    act = {
        (r["canonical_symbol"], r["ts_utc"].astimezone(UTC)): r
        for r in conn.execute("SELECT * FROM tickagg.data_bars")
        if r["ts_utc"] < cursor[r["canonical_symbol"]]
    }
    assert act.keys() == exp.keys()
    for k, (bar, kind) in exp.items():
        a = act[k]
        got = (
            a["open"],
            a["high"],
            a["low"],
            a["close"],
            a["volume"],
            a["trade_count"],
            a["volume_kind"],
        )
        want = (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count, kind)
        assert got == want, k
    return len(exp)


def tick_batches(conn) -> list[dict]:
    return conn.execute(
        "SELECT started_at, count(*) AS n FROM tickagg.ops_runlog"
        " WHERE task_kind = 'ticks_1m' AND outcome = 'success'"
        " GROUP BY started_at HAVING count(*) > 1"
    ).fetchall()


def test_a_ticks_batch_equals_the_oracle_late_ticks_included(dsn, conn):
    rng, kinds, ticks = setup(conn, 8, 2421)
    arrivals = shuffled_arrival(rng, ticks)
    cut = len(arrivals) * 2 // 3
    held = set(rng.sample(range(cut // 2), 12))  # they arrive after their minutes closed
    first = [t for i, t in enumerate(arrivals[:cut]) if i not in held]
    ingest_in_batches(conn, rng, first)
    Runner(RunnerConfig(dsn=dsn)).run_due()
    assert tick_batches(conn), "no ticks_1m batch ran"
    assert assert_closed_minutes_match(conn, first, kinds) > 20
    ingest_in_batches(conn, rng, [arrivals[i] for i in sorted(held)] + arrivals[cut:])
    late = conn.execute(
        "SELECT count(*) AS n FROM tickagg.agg_invalidations WHERE timeframe = '1m'"
    ).fetchone()["n"]
    assert late > 0, "no late tick"
    Runner(RunnerConfig(dsn=dsn)).run_due()
    assert assert_closed_minutes_match(conn, arrivals, kinds) > 40


def test_sigkill_during_ticks_batches_loses_and_duplicates_nothing(dsn, conn):
    rng, kinds, ticks = setup(conn, 12, 2422)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2")
    last = h.cursors(conn)
    chunk = len(ticks) // 10 + 1
    for k in range(10):
        ingest(conn, ticks[k * chunk : (k + 1) * chunk])
        last = sigkill_runner_once_working(conn, cmd, rng.uniform(0.0, 0.3), last)
    assert tick_batches(conn), "no ticks_1m batch committed before the kills"
    h.run_until_idle_after_kills(dsn, conn)
    assert assert_closed_minutes_match(conn, ticks, kinds) > 60
    # in time order every minute closed once, after all its ticks: written once
    twice = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_bars WHERE source <> 'live_aggregated'"
        " OR updated_at <> ingested_at"
    ).fetchone()["n"]
    assert twice == 0
