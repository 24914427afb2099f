"""A batch of live ticks_1m tasks (agg_claim_batch, agg_run_ticks_batch): one
statement writes the closed minutes of every tick-fed symbol of a market. Its
bars equal the tick oracle's (tests/tick_oracle.py) minute for minute on random
streams with out-of-order arrival and late ticks (a task with late minutes runs
alone and re-aggregates them), a task whose lease was taken over is skipped, and
SIGKILLs of a runner during batches lose and duplicate nothing."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import helpers as h
from test_batch import sigkill_runner_once_working
from test_ticks import bars_1m, ingest_in_batches, register_ticks
from tick_oracle import expected_1m, random_ticks, shuffled_arrival

from runner.loop import Runner, RunnerConfig

UTC = dt.UTC
KINDS = {f"TB{i}": ("last", "mid")[i % 3 == 2] for i in range(8)}


def live_setup(conn, rng: random.Random, minutes: int):
    """Tick-fed crypto symbols whose tasks start `minutes` + 2 minutes ago (live:
    within ticks_task_is_live's reach); their ticks of those minutes, shuffled."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    agg_start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes + 2)
    for sym, kind in KINDS.items():
        register_ticks(conn, sym, "crypto_24x7", kind)
    h.sync(conn, agg_start)
    streams = []
    for i, (sym, kind) in enumerate(KINDS.items()):
        streams += random_ticks(rng, sym, kind, agg_start, minutes, 100.0 + 10 * i)
    return shuffled_arrival(rng, sorted(streams, key=lambda t: t.ts))


def ticks_batches(conn) -> list[dict]:
    """ticks_1m runs that committed together (a batch's runs share started_at)."""
    return conn.execute(
        "SELECT started_at, count(*) AS n FROM tickagg.ops_runlog"
        " WHERE task_kind = 'ticks_1m' AND outcome = 'success'"
        " GROUP BY started_at HAVING count(*) > 1"
    ).fetchall()


def assert_closed_minutes_match(conn, arrivals) -> int:
    """Every minute behind its task's cursor equals the oracle; returns how many."""
    cursor = {s: c for (s, tf, kind), c in h.cursors(conn).items() if kind == "ticks_1m"}
    exp = {k: v for k, v in expected_1m(arrivals, KINDS).items() if k[1] < cursor[k[0]]}
    act = {k: r for k, r in bars_1m(conn).items() if k[0] in KINDS and k[1] < cursor[k[0]]}
    assert set(act) == set(exp), (
        f"missing {sorted(set(exp) - set(act))[:5]} unexpected {sorted(set(act) - set(exp))[:5]}"
    )
    for k, (bar, kind) in exp.items():
        a = act[k]
        got = (a["open"], a["high"], a["low"], a["close"], a["volume"], a["trade_count"])
        assert got == (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count), k
        assert abs(a["vwap"] - bar.vwap) <= 1e-12 * abs(bar.vwap), k
        assert a["volume_kind"] == kind, k
    return len(exp)


def test_a_ticks_batch_equals_the_oracle_late_ticks_included(dsn, conn):
    rng = random.Random(2611)
    arrivals = live_setup(conn, rng, minutes=9)
    # a tenth of the first minutes' ticks arrive after those minutes were written
    held = [t for t in arrivals if t.ts < arrivals[0].ts + dt.timedelta(minutes=4)]
    late = set(rng.sample(range(len(held)), len(held) // 10))
    late_ticks = [t for i, t in enumerate(held) if i in late]
    on_time = [t for t in arrivals if t not in late_ticks]
    delivered = ingest_in_batches(conn, rng, on_time)
    Runner(RunnerConfig(dsn=dsn, batch_size=50)).run_due()
    assert ticks_batches(conn), "the live ticks_1m tasks did not run as a batch"
    assert assert_closed_minutes_match(conn, delivered) > 8 * 6

    delivered += ingest_in_batches(conn, rng, late_ticks)
    Runner(RunnerConfig(dsn=dsn, batch_size=50)).run_due()
    assert assert_closed_minutes_match(conn, delivered) > 8 * 6
    patched = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_bars WHERE source = 'live_gap_filled'"
    ).fetchone()["n"]
    assert patched > 0, "the late ticks patched no minute"
    left = conn.execute(
        "SELECT count(*) AS n FROM tickagg.agg_invalidations WHERE timeframe = '1m'"
    ).fetchone()["n"]
    assert left == 0


def test_a_task_whose_lease_was_taken_over_is_skipped_in_its_ticks_batch(dsn, conn):
    rng = random.Random(2612)
    delivered = ingest_in_batches(conn, rng, live_setup(conn, rng, minutes=6))
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE task_kind <> 'ticks_1m'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'ticks_1m'"
    )
    tasks = conn.execute(
        "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 10)"
    ).fetchall()
    assert sorted(t["canonical_symbol"] for t in tasks) == sorted(KINDS)
    taken = h.take_over_lease(conn, "TB3", "1m", "ticks_1m")
    before = h.cursors(conn)
    run_ids = [uuid.uuid4() for _ in tasks]
    rows = conn.execute(
        "SELECT * FROM tickagg.agg_run_ticks_batch(%s, %s, %s, %s, clock_timestamp())",
        (
            [t["canonical_symbol"] for t in tasks],
            [t["claim_token"] for t in tasks],
            [t["cursor_ts"] for t in tasks],
            run_ids,
        ),
    ).fetchall()
    outcome = {r["canonical_symbol"]: r["outcome"] for r in rows}
    assert outcome == {s: "lease_lost" if s == "TB3" else "success" for s in KINDS}
    written = {k[0] for k in bars_1m(conn)}
    assert "TB3" not in written and written >= set(KINDS) - {"TB3"}
    after = h.cursors(conn)
    assert after["TB3", "1m", "ticks_1m"] == before["TB3", "1m", "ticks_1m"]
    assert all(after[s, "1m", "ticks_1m"] > before[s, "1m", "ticks_1m"] for s in written)
    logged = conn.execute(
        "SELECT canonical_symbol, outcome FROM tickagg.ops_runlog WHERE run_id = ANY(%s)",
        (run_ids,),
    ).fetchall()
    assert sorted((r["canonical_symbol"], r["outcome"]) for r in logged) == sorted(
        (s, "lease_lost" if s == "TB3" else "success") for s in KINDS
    )
    # the new holder gives it back; then everything catches up exactly
    conn.execute("SELECT tickagg.agg_finish('TB3', '1m', 'ticks_1m', %s, 'release')", (taken,))
    Runner(RunnerConfig(dsn=dsn)).run_due()
    assert assert_closed_minutes_match(conn, delivered) > 8 * 4


# a ticks_1m task's claim gives it a new token: a runner has claimed the round's
# tasks once this changes, and is in or just past their batch
TICKS_CLAIMS = (
    "SELECT array_agg(claim_token ORDER BY canonical_symbol) AS tokens"
    " FROM tickagg.data_agg_state WHERE task_kind = 'ticks_1m'"
)


def test_sigkill_during_ticks_batches_loses_and_duplicates_nothing(dsn, conn):
    rng = random.Random(2613)
    arrivals = live_setup(conn, rng, minutes=12)
    # the rounds' own ticks close their minutes, not the wall clock: with the
    # 2-minute default the first run's frontier passed every later round's
    # minutes, so those rounds were late ticks, run alone, never a batch
    conn.execute(
        "UPDATE tickagg.data_agg_state SET aggregation_delay = '1 hour'"
        " WHERE task_kind = 'ticks_1m'"
    )
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2")
    delivered, last = [], h.cursors(conn)
    step = len(arrivals) // 4 + 1
    for k in range(4):
        delivered += ingest_in_batches(conn, rng, arrivals[k * step : (k + 1) * step])
        conn.execute(
            "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'ticks_1m'"
        )
        last = sigkill_runner_once_working(conn, cmd, rng.uniform(0.0, 0.3), last, TICKS_CLAIMS)
    h.run_until_idle_after_kills(dsn, conn)
    assert ticks_batches(conn), "no ticks batch committed"
    assert assert_closed_minutes_match(conn, delivered) > 8 * 8
