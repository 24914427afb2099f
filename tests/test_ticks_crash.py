"""SIGKILL a runner aggregating ticks at random moments: cursors never move back,
the final 1m and derived bars equal the oracles, nothing was written twice."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import helpers as h
from test_ticks import assert_1m_matches, assert_derived_match, ingest_in_batches, setup


def test_sigkill_while_aggregating_ticks(dsn, conn):
    rng, agg_start, streams = setup(conn, minutes=360, seed=5151)
    streams = ingest_in_batches(conn, rng, streams)
    rng = random.Random(5151)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2", "--max-windows", "20")
    last = h.cursors(conn)
    moved = 0
    for _ in range(12):
        now = h.sigkill_runner_after(conn, cmd, rng.uniform(0.3, 1.5), last)
        moved += sum(now[k] != last[k] for k in now if k[2] == "ticks_1m")
        last = now
    assert moved > 0, "the runner never got to the ticks before being killed"

    h.run_until_idle_after_kills(dsn, conn)
    exp = assert_1m_matches(conn, streams)
    assert_derived_match(conn, exp, agg_start)
    # every minute was written once, by the forward pass
    twice = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_bars WHERE source <> 'live_aggregated'"
        " OR updated_at <> ingested_at"
    ).fetchone()["n"]
    assert twice == 0
    revised = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars"
        " WHERE derivation_version <> 1 OR deleted_at IS NOT NULL"
    ).fetchone()["n"]
    assert revised == 0


def test_sigkill_while_ticks_stream_in(dsn, conn):
    """A producer streams ticks (runner.tick_sim, minutes closed by later ticks)
    while the runner is SIGKILLed again and again: afterwards every closed minute
    has exactly the bar the oracle computes from the stored ticks, and the
    rollups equal tests/oracle.py."""
    import datetime as dt
    import threading

    from tick_oracle import Tick, expected_1m

    from runner import tick_sim

    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(dt.UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    for sym, kind in (("TBTC", "last"), ("TEUR", "mid")):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks',"
            " p_price_kind => %s)",
            (sym, kind),
        )
    h.sync(conn, start)
    for sym in ("TBTC", "TEUR"):
        conn.execute("SELECT tickagg.agg_task_set_delay(%s, '100 years', 'ticks_1m')", (sym,))
    sims = [tick_sim.SimSymbol("TBTC", "last", 500.0, 60), tick_sim.SimSymbol("TEUR", "mid", 1.1)]
    producer = threading.Thread(target=tick_sim.replay, args=(dsn, sims, start, 40, 400.0))
    producer.start()
    rng = random.Random(77)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "2", "--lease-seconds", "2")
    while producer.is_alive():
        p = subprocess.Popen(
            cmd, cwd=h.ROOT, env=h.cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.1, 0.8))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    producer.join()
    h.run_until_idle_after_kills(dsn, conn)

    ticks = [
        Tick(r["canonical_symbol"], r["ts_utc"].astimezone(dt.UTC), r["bid"], r["ask"],
             r["last_price"], r["size"])
        for r in conn.execute("SELECT * FROM tickagg.ticks ORDER BY tick_seq")
    ]  # fmt: skip
    cursor = {
        r["canonical_symbol"]: r["last_agg_bar_ts_utc"]
        for r in conn.execute(
            "SELECT canonical_symbol, last_agg_bar_ts_utc FROM tickagg.data_agg_state"
            " WHERE task_kind = 'ticks_1m'"
        )
    }
    exp = {
        k: v
        for k, v in expected_1m(ticks, {"TBTC": "last", "TEUR": "mid"}).items()
        if k[1] < cursor[k[0]]
    }
    assert len(exp) > 60
    act = {
        (r["canonical_symbol"], r["ts_utc"].astimezone(dt.UTC)): r
        for r in conn.execute("SELECT * FROM tickagg.data_bars")
    }
    assert act.keys() == exp.keys()
    for k, (bar, _) in exp.items():
        a = act[k]
        assert (a["open"], a["high"], a["low"], a["close"], a["trade_count"]) == (
            bar.open, bar.high, bar.low, bar.close, bar.trade_count
        ), k  # fmt: skip
    assert_derived_match(conn, exp, start)
