"""SIGKILL a runner at random moments, 20+ times: cursors never move backwards,
the final state equals the oracle and nothing was written twice."""

from __future__ import annotations

import datetime as dt
import random

import helpers as h
from test_oracle import assert_matches, build, load

D = dt.date


def test_sigkill_at_random_moments(dsn, conn):
    seed = 5150
    rng = random.Random(seed)
    print(f"crash seed={seed}")
    syms = (
        ("K1", "forex_24x5", 1.1, True, True, "polygon_historical"),
        ("K2", "us_equity", 300.0, True, True, "polygon_historical"),
    )
    agg_start, data = build(seed, ranges=((D(2025, 10, 25), D(2025, 11, 7)),), symbols=syms)
    load(conn, agg_start, data)
    cmd = h.tickagg_cmd(
        dsn, "run", "--workers", "1", "--lease-seconds", "2", "--max-windows", "200"
    )
    last = h.cursors(conn)
    moved = 0
    for _ in range(22):
        now = h.sigkill_runner_after(conn, cmd, rng.uniform(0.05, 1.5), last)
        moved += sum(now[k] != last[k] for k in now)
        last = now
    assert moved > 0, "the runner never got to work before being killed"

    # finish: expired leases are reclaimed once they run out
    h.run_until_idle_after_kills(dsn, conn, "--max-windows", "200")
    for k, v in h.cursors(conn).items():
        assert v >= last[k]
    assert_matches(conn, agg_start, data)
    # data never changed, so every bar was written once: no second revision anywhere
    revised = conn.execute(
        "SELECT canonical_symbol, timeframe, ts_utc, derivation_version"
        " FROM tickagg.derived_data_bars"
        " WHERE derivation_version <> 1 OR deleted_at IS NOT NULL LIMIT 5"
    ).fetchall()
    assert revised == []
