"""The late-data cascade: a run that redoes buckets behind its cursor also redoes
the dirty buckets of the levels above it, in the same transaction
(rollup_cascade_dirty). These tests hold levels from other sessions and make a
level fail, and check that every derived bar still ends equal to the oracle."""

from __future__ import annotations

import datetime as dt
import random
import threading

import helpers as h
import psycopg
import pytest
from oracle import TIMEFRAMES, Bar1m, random_bars
from test_oracle import assert_matches

UTC = dt.UTC
SYM, CAL = "FXC", "forex_24x5"
AGG_START = dt.datetime(2025, 3, 3, tzinfo=UTC)
LATE_AT = dt.datetime(2025, 3, 12, 15, 7, tzinfo=UTC)


def loaded(dsn, conn, seed: int) -> dict[dt.datetime, Bar1m]:
    """One forex symbol, two weeks, every level materialised and idle."""
    rng = random.Random(seed)
    h.register(conn, SYM, CAL)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    bars = random_bars(CAL, dt.date(2025, 3, 2), dt.date(2025, 3, 14), rng, base=1.08)
    h.insert_bars(conn, SYM, bars)
    h.drive(dsn)
    return bars


def land_late_high(conn, bars: dict[dt.datetime, Bar1m]) -> dt.datetime:
    """Correct one minute with a new high: the bar of every level changes."""
    t = min(ts for ts in bars if ts >= LATE_AT)
    old = bars[t]
    bars[t] = Bar1m(
        old.open, old.high + 1.0, old.low, old.close, old.volume, old.vwap, old.trade_count,
        "live_aggregated",
    )  # fmt: skip
    assert h.ingest(conn, [(SYM, t, bars[t])])["rows_landed"] == 1
    return t


def run_5m(conn) -> dict:
    """The 5m task's run, as agg_run_rollup makes it, in separate calls: claim,
    catch-up, finish."""
    tasks = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
    ).fetchall()
    assert [t["timeframe"] for t in tasks] == ["5m"], tasks
    (task,) = tasks
    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.catchup_aggregation_range(%s, %s, %s) AS r",
            (SYM, "5m", task["cursor_ts"]),
        ).fetchone()["r"]
        h._finish(conn, task, res)
    return res


def pending(conn) -> list[str]:
    return [
        r["timeframe"]
        for r in conn.execute(
            "SELECT DISTINCT timeframe FROM tickagg.agg_invalidations WHERE canonical_symbol = %s",
            (SYM,),
        )
    ]


def bars_written_totals(conn) -> dict[str, int]:
    return {
        r["timeframe"]: r["bars_written_total"]
        for r in conn.execute(
            "SELECT timeframe, bars_written_total FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND task_kind = 'rollup'",
            (SYM,),
        )
    }


def max_change_no(conn) -> int:
    return conn.execute(
        "SELECT coalesce(max(change_no), 0) AS n FROM tickagg.derived_data_bars"
    ).fetchone()["n"]


def assert_oracle(conn, bars) -> None:
    assert_matches(conn, AGG_START, {SYM: (CAL, bars)})


def test_one_run_redoes_every_level_and_counts_its_bars(dsn, conn):
    bars = loaded(dsn, conn, 11)
    before = bars_written_totals(conn)
    land_late_high(conn, bars)
    res = run_5m(conn)
    assert res["bars_written"] == 1
    assert sorted(res["cascaded"]) == sorted(TIMEFRAMES[1:]), res
    assert all(
        c["bars_written"] == 1 and c["bars_deleted"] == 0 for c in res["cascaded"].values()
    ), res
    assert pending(conn) == []
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM tickagg.agg_get_due_tasks('prod', now(), 100)"
        ).fetchone()["n"]
        == 0
    )
    after = bars_written_totals(conn)
    assert {tf: after[tf] - before[tf] for tf in TIMEFRAMES} == dict.fromkeys(TIMEFRAMES, 1)
    assert_oracle(conn, bars)


def test_a_level_locked_by_another_session_stops_the_cascade_there(dsn, conn):
    """A claim in progress elsewhere holds the 1h task's row: the cascade never
    waits for it, redoes 15m and 30m, and leaves 1h and above to their own runs."""
    bars = loaded(dsn, conn, 12)
    land_late_high(conn, bars)
    with psycopg.connect(dsn, autocommit=False) as other:
        other.execute(
            "SELECT 1 FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND timeframe = '1h' AND task_kind = 'rollup' FOR UPDATE",
            (SYM,),
        )
        res = run_5m(conn)
        other.rollback()
    assert sorted(res["cascaded"]) == ["15m", "30m"], res
    assert pending(conn) == ["1h"]
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_a_level_another_runner_has_claimed_is_left_to_it(dsn, conn):
    """The 4h task is running elsewhere (claimed, lease valid): the cascade stops
    below it; after that runner finishes, everything converges."""
    bars = loaded(dsn, conn, 13)
    land_late_high(conn, bars)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '5 minutes', running_started_at_utc = now()"
        " WHERE canonical_symbol = %s AND timeframe = '4h' AND task_kind = 'rollup'",
        (SYM,),
    )
    res = run_5m(conn)
    assert sorted(res["cascaded"]) == ["15m", "1h", "30m"], res
    assert pending(conn) == ["4h"]
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'idle', claim_token = NULL,"
        " lease_expires_at = NULL, running_started_at_utc = NULL"
        " WHERE canonical_symbol = %s AND timeframe = '4h'",
        (SYM,),
    )
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_a_failing_level_rolls_back_the_cascade_alone(dsn, conn):
    """A level above that cannot be written (here a trigger refuses 1d bars) costs
    the run nothing: its own 5m bar lands, the levels above are left, queued, to
    their own runs, and the 1d task's run reports the error."""
    bars = loaded(dsn, conn, 14)
    conn.execute(
        """
        CREATE FUNCTION pg_temp.refuse_1d() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.timeframe = '1d' THEN
                RAISE EXCEPTION 'no 1d bars today';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_1d BEFORE INSERT OR UPDATE ON tickagg.derived_data_bars
        FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_1d();
        """
    )
    try:
        land_late_high(conn, bars)
        res = run_5m(conn)
        assert res["bars_written"] == 1
        assert "no 1d bars today" in res["cascaded"]["error"], res
        assert pending(conn) == ["15m"]
        # the levels' own runs: 15m to 4h land, 1d keeps failing (the runner would
        # back off and report it), so 1w waits
        for tf in TIMEFRAMES[1:5]:
            (task,) = conn.execute(
                "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 300)"
            ).fetchall()
            assert task["timeframe"] == tf, task
            with conn.transaction():
                res = conn.execute(
                    "SELECT tickagg.catchup_aggregation_range(%s, %s, %s) AS r",
                    (SYM, tf, task["cursor_ts"]),
                ).fetchone()["r"]
                h._finish(conn, task, res)
        (task,) = conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1, 300)"
        ).fetchall()
        assert task["timeframe"] == "1d"
        with pytest.raises(psycopg.errors.RaiseException, match="no 1d bars today"):
            with conn.transaction():
                conn.execute(
                    "SELECT tickagg.catchup_aggregation_range(%s, %s, %s)",
                    (SYM, "1d", task["cursor_ts"]),
                )
    finally:
        conn.execute("DROP TRIGGER IF EXISTS refuse_1d ON tickagg.derived_data_bars")
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'idle', claim_token = NULL,"
        " lease_expires_at = NULL, running_started_at_utc = NULL WHERE status = 'running'"
    )
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_the_runner_logs_and_counts_cascaded_bars(dsn, conn):
    """`tickagg run` over one late minute: one task run, seven bars, each counted
    under its own timeframe in the metrics. The runner has its own pool, as `tickagg
    run` has: the run and its next claim are one statement."""
    from runner.loop import Runner, RunnerConfig
    from runner.metrics import Metrics

    bars = loaded(dsn, conn, 15)
    land_late_high(conn, bars)
    metrics = Metrics()
    cfg = RunnerConfig(dsn=dsn, lease_seconds=60, statement_timeout=30, until_idle=True)
    stats = Runner(cfg, metrics=metrics).run(install_signals=False)
    assert (stats.tasks_succeeded, stats.bars_written) == (1, len(TIMEFRAMES)), stats
    written = {tf: metrics.bars_written.labels(timeframe=tf)._value.get() for tf in TIMEFRAMES}
    assert written == dict.fromkeys(TIMEFRAMES, 1)
    assert_oracle(conn, bars)


def test_a_rebuild_during_a_cascade_waits_for_it(dsn, conn):
    """derived_rebuild_range of a level the uncommitted cascade holds waits for it
    and then reads what it committed; without the wait it rewrote 1h from the old
    30m bars after the cascade had dropped the 1h invalidation (found in review)."""
    bars = loaded(dsn, conn, 22)
    t = land_late_high(conn, bars)
    (task,) = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
    ).fetchall()
    rebuilt = {}

    other_session = psycopg.connect(dsn, autocommit=True)

    def rebuild_1h() -> None:
        with other_session as other:
            rebuilt["r"] = other.execute(
                "SELECT tickagg.derived_rebuild_range(%s, '1h', %s, %s)",
                (SYM, t, t + dt.timedelta(minutes=1)),
            ).fetchone()[0]

    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.catchup_aggregation_range(%s, %s, %s) AS r",
            (SYM, "5m", task["cursor_ts"]),
        ).fetchone()["r"]
        assert "1h" in res["cascaded"], res
        other = threading.Thread(target=rebuild_1h)
        other.start()
        with h.connect(dsn) as watcher:
            h.wait_until_blocked(watcher, other_session.info.backend_pid, conn.info.backend_pid)
        assert "r" not in rebuilt, "the rebuild did not wait for the cascade"
        h._finish(conn, task, res)
    other.join(timeout=30)
    assert rebuilt["r"]["bars_written"] == 0, rebuilt  # it found the cascade's bar current
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_a_cascade_locks_no_level_it_does_not_take(dsn, conn):
    """With 15m claimed by another runner the cascade takes nothing above it and
    holds none of those rows: the other runner's finish, which wakes 30m, does not
    wait for the cascade's transaction (they deadlocked, found in review)."""
    bars = loaded(dsn, conn, 21)
    land_late_high(conn, bars)
    # (its cursor one bucket back, so that its finish moves it forward, and wakes 30m,
    # without passing 5m's cursor: agg_finish refuses a cursor past its source's)
    claimed = conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '5 minutes', running_started_at_utc = now(),"
        " last_agg_bar_ts_utc = last_agg_bar_ts_utc - interval '15 minutes'"
        " WHERE canonical_symbol = %s AND timeframe = '15m' AND task_kind = 'rollup'"
        " RETURNING claim_token, last_agg_bar_ts_utc",
        (SYM,),
    ).fetchone()
    (task,) = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
    ).fetchall()
    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.catchup_aggregation_range(%s, %s, %s) AS r",
            (SYM, "5m", task["cursor_ts"]),
        ).fetchone()["r"]
        assert res["cascaded"] == {}, res
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SET lock_timeout = '2s'")
            other.execute(
                "SELECT tickagg.agg_finish(%s, '15m', 'rollup', %s, 'success', %s, %s)",
                (
                    SYM,
                    claimed["claim_token"],
                    claimed["last_agg_bar_ts_utc"],
                    claimed["last_agg_bar_ts_utc"] + dt.timedelta(minutes=15),
                ),
            )
        h._finish(conn, task, res)
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_a_backfill_is_left_to_each_levels_own_run(dsn, conn):
    """A day of corrected minutes is many 5m buckets: the 5m run redoes them and
    leaves the levels above to their own runs, each in its own transaction. 15m,
    30m and 1h have more than 16 buckets of that day each; 4h has 6, so its run
    cascades to 1d and 1w."""
    bars = loaded(dsn, conn, 23)
    day = [ts for ts in sorted(bars) if LATE_AT <= ts < LATE_AT + dt.timedelta(days=1)]
    rows = []
    for ts in day:
        old = bars[ts]
        bars[ts] = Bar1m(
            old.open, old.high, old.low, old.close, old.volume + 1, old.vwap, old.trade_count,
            "live_aggregated",
        )  # fmt: skip
        rows.append((SYM, ts, bars[ts]))
    assert h.ingest(conn, rows)["rows_landed"] == len(day)
    res = run_5m(conn)
    assert res["bars_written"] > 16 and res["cascaded"] == {}, res
    assert pending(conn) == ["15m"]
    totals = h.drive(dsn)
    assert totals["claims"] == 4, totals
    assert_oracle(conn, bars)


def test_a_late_bar_cascades_while_the_run_also_catches_up(dsn, conn):
    """Live data keeps the 5m run building new buckets; a late minute in the same
    run still cascades (whether to cascade looks at the late buckets only)."""
    bars = loaded(dsn, conn, 24)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = %s"
        " WHERE canonical_symbol = %s AND task_kind = 'rollup'",
        (dt.datetime(2025, 3, 14, 12, tzinfo=UTC), SYM),
    )
    land_late_high(conn, bars)
    res = run_5m(conn)
    assert res["cursor_to"] > res["cursor_from"], res
    assert sorted(res["cascaded"]) == sorted(TIMEFRAMES[1:]), res
    h.drive(dsn)
    assert_oracle(conn, bars)


def test_runners_killed_mid_cascade_lose_and_duplicate_nothing(dsn, conn):
    """Late corrections keep arriving while runner processes are SIGKILLed at random
    moments (a run, cascade included, commits whole or not at all): every derived
    bar still ends equal to the oracle and no cursor ever moves back."""
    rng = random.Random(31)
    bars = loaded(dsn, conn, 31)
    minutes = sorted(bars)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "2", "--lease-seconds", "2")
    last = h.cursors(conn)
    written_before = max_change_no(conn)
    for _ in range(12):
        late = {}
        for ts in rng.sample(minutes, 3):
            old = bars[ts]
            bump = rng.choice((-1, 1)) * rng.uniform(0.01, 0.1)
            bars[ts] = late[ts] = Bar1m(
                old.open, max(old.high, old.high + bump), min(old.low, old.low + bump), old.close,
                old.volume, old.vwap, old.trade_count, "live_aggregated",
            )  # fmt: skip
        assert h.ingest(conn, [(SYM, ts, b) for ts, b in late.items()])["rows_landed"] == 3
        last = h.sigkill_runner_after(conn, cmd, rng.uniform(0.3, 1.2), last)
    assert max_change_no(conn) > written_before, "the killed runners never got to work"
    h.run_until_idle_after_kills(dsn, conn)
    assert h.pending_invalidations(conn) == 0
    assert_oracle(conn, bars)
