"""`rebuild` racing the task's own run of the same series (issue 18 item 2).

Who wins: whichever of the two takes the series first (rollup_series_lock); the
other waits, holding nothing, and then reads what the first committed. Tested
with real separate sessions (a run that starts while a rebuild's transaction is
open, a rebuild that starts while a run's is), then with `tickagg run` and
`tickagg rebuild` processes SIGKILLed at random moments while late corrections
arrive: the end state equals the oracle, nothing lost or written twice."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import threading
import time
import uuid

import helpers as h
import psycopg
from oracle import TIMEFRAMES, Bar1m, random_bars
from psycopg.rows import dict_row
from test_late_cascade import AGG_START, CAL, SYM, assert_oracle, land_late_high, loaded
from test_oracle import assert_matches, build, load

from runner import queries

UTC = dt.UTC
D = dt.date


def claim_only(conn, timeframe: str) -> dict:
    """Claim the one due task, SYM's rollup of timeframe."""
    (task,) = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
    ).fetchall()
    assert (task["canonical_symbol"], task["timeframe"]) == (SYM, timeframe), task
    return task


def rebuild_call(conn, tf: str, start, end) -> dict:
    return conn.execute(
        "SELECT tickagg.derived_rebuild_range(%s, %s, %s, %s) AS r", (SYM, tf, start, end)
    ).fetchone()["r"]


def test_a_run_that_starts_during_a_rebuild_waits_for_it(dsn, conn):
    """A rebuild's transaction is open (its statement writes bucket after bucket;
    here two calls, the late bucket in the second) when the 5m task's own run
    starts. The run waits before it writes anything; the rebuild then rewrites the
    late bucket and commits; the run goes on from what it committed. Before
    rollup_series_lock the run wrote the late bucket, waited for the task row at
    its finish, and the rebuild's write of that bucket waited for the run: a
    deadlock, one of them failed."""
    bars = loaded(dsn, conn, 31)
    late = land_late_high(conn, bars)
    task = claim_only(conn, "5m")
    run = {}
    run_session = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    rebuild_session = psycopg.connect(dsn, autocommit=False, row_factory=dict_row)

    def run_5m() -> None:
        try:
            run["r"] = queries.agg_run_rollup(run_session, task, uuid.uuid4(), dt.datetime.now(UTC))
        except Exception as e:  # the assertion below reports it
            run["error"] = e

    try:
        first = rebuild_call(rebuild_session, "5m", AGG_START, late - dt.timedelta(days=1))
        assert first["buckets_rebuilt"] > 0, first
        runner = threading.Thread(target=run_5m)
        runner.start()
        h.wait_until_blocked(conn, run_session.info.backend_pid, rebuild_session.info.backend_pid)
        second = rebuild_call(rebuild_session, "5m", late, late + dt.timedelta(minutes=1))
        assert second["bars_written"] == 1, second  # the late high, rebuilt here
        rebuild_session.commit()
        runner.join(timeout=60)
        assert "error" not in run, run
        assert run["r"]["success"] is True, run
        # the rebuild got there first: the run found the late bucket current
        assert run["r"]["bars_written"] == 0, run
    finally:
        rebuild_session.close()
        run_session.close()
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_a_rebuild_during_a_run_waits_and_reads_its_cursor(dsn, conn):
    """The 1h task, enabled after the levels below it caught up, is due from its
    first bucket; its run's transaction is open when a full rebuild of 1h starts.
    The rebuild waits for it and covers what the run committed, up to its new
    cursor (it read the task before waiting, found nothing materialised and
    returned the old cursor)."""
    rng = random.Random(32)
    h.register(conn, SYM, CAL)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    above = ["1h", "4h", "1d", "1w"]
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false WHERE timeframe = ANY(%s)", (above,)
    )
    bars = random_bars(CAL, D(2025, 3, 2), D(2025, 3, 14), rng, base=1.08)
    h.insert_bars(conn, SYM, bars)
    h.drive(dsn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = true, next_run_at = now()"
        " WHERE timeframe = '1h' AND task_kind = 'rollup'"
    )
    task = claim_only(conn, "1h")
    rebuilt = {}
    rebuild_session = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)

    def rebuild_1h() -> None:
        rebuilt["r"] = rebuild_call(rebuild_session, "1h", "-infinity", "infinity")

    try:
        with h.connect(dsn) as run_session, run_session.transaction():
            res = queries.agg_run_rollup(run_session, task, uuid.uuid4(), dt.datetime.now(UTC))
            assert res["bars_written"] > 0, res
            other = threading.Thread(target=rebuild_1h)
            other.start()
            h.wait_until_blocked(
                conn, rebuild_session.info.backend_pid, run_session.info.backend_pid
            )
            assert "r" not in rebuilt, "the rebuild did not wait for the run"
        other.join(timeout=60)
    finally:
        rebuild_session.close()
    new_cursor = dt.datetime.fromisoformat(res["cursor_to"])
    r = rebuilt["r"]
    assert dt.datetime.fromisoformat(r["cursor"]) == new_cursor, (r, res)
    assert r["buckets_rebuilt"] > 0 and r["bars_written"] == 0, r  # the run's bars are current
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = true WHERE timeframe = ANY(%s)", (above,)
    )
    h.drive(dsn)
    assert_matches(conn, AGG_START, {SYM: (CAL, bars)})


def _late_corrections(conn, data: dict, rng: random.Random, n: int) -> None:
    """n random minutes of random symbols corrected (new high), at the top rank so
    they win; the oracle's bars follow."""
    rows = []
    for _ in range(n):
        sym = rng.choice(sorted(data))
        bars = data[sym][1]
        t = rng.choice(sorted(bars))
        old = bars[t]
        bars[t] = Bar1m(
            old.open, old.high + 1.0, old.low, old.close, old.volume + 1.0, old.vwap,
            old.trade_count, "live_aggregated",
        )  # fmt: skip
        rows.append((sym, t, bars[t]))
    h.ingest(conn, rows)


def test_rebuilds_and_runs_sigkilled_while_late_data_arrives(dsn, conn):
    """Two `tickagg run` processes and `tickagg rebuild --timeframe all` of each
    symbol at once, late corrections landing between, one of the processes
    SIGKILLed at a random moment each round. Every rebuild that is not killed
    exits 0 (no deadlock), and after the runners are done every derived bar
    equals the oracle."""
    seed = 1802
    rng = random.Random(seed)
    print(f"rebuild race seed={seed}")
    syms = (
        ("RB1", "forex_24x5", 1.1, True, True, "polygon_historical"),
        ("RB2", "crypto_24x7", 300.0, True, True, "polygon_historical"),
    )
    agg_start, data = build(seed, ranges=((D(2025, 10, 27), D(2025, 11, 4)),), symbols=syms)
    load(conn, agg_start, data)
    h.rollups_only(conn)
    h.drive(dsn)
    run_cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2")
    runners = [
        subprocess.Popen(run_cmd, cwd=h.ROOT, env=h.cli_env(), stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    killed = finished = 0
    try:
        for _ in range(10):
            _late_corrections(conn, data, rng, 5)
            rebuilds = {
                sym: subprocess.Popen(
                    h.tickagg_cmd(
                        dsn,
                        "rebuild",
                        "--symbol",
                        sym,
                        "--timeframe",
                        "all",
                        "--from",
                        "2025-10-26",
                        "--to",
                        "2025-11-06",
                        "--chunk",
                        "1d",
                    ),  # fmt: skip
                    cwd=h.ROOT,
                    env=h.cli_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for sym in data
            }
            _late_corrections(conn, data, rng, 5)
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice([*rebuilds, "runner"])
            if victim == "runner":
                i = rng.randrange(len(runners))
                runners[i].send_signal(signal.SIGKILL)
                runners[i].wait(timeout=30)
                runners[i] = subprocess.Popen(
                    run_cmd, cwd=h.ROOT, env=h.cli_env(), stderr=subprocess.DEVNULL
                )
            elif rebuilds[victim].poll() is None:
                rebuilds[victim].send_signal(signal.SIGKILL)
                killed += 1
            for sym, p in rebuilds.items():
                _, err = p.communicate(timeout=300)
                if p.returncode == -signal.SIGKILL:
                    continue
                assert p.returncode == 0, f"rebuild of {sym} failed: {err[-2000:]}"
                finished += 1
    finally:
        for p in runners:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
    assert finished >= 10, (finished, killed)
    h.run_until_idle_after_kills(dsn, conn)
    assert_matches(conn, agg_start, data)
    live = conn.execute(
        "SELECT count(DISTINCT timeframe) AS n FROM tickagg.derived_data_bars"
        " WHERE deleted_at IS NULL"
    ).fetchone()["n"]
    assert live == len(TIMEFRAMES)
