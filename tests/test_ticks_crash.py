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
    ingest_in_batches(conn, rng, streams)
    rng = random.Random(5151)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2", "--max-windows", "20")
    last = h.cursors(conn)
    moved = 0
    for trial in range(12):
        p = subprocess.Popen(
            cmd, cwd=h.ROOT, env=h.cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.3, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        now = h.cursors(conn)
        for k, v in now.items():
            assert v >= last[k], f"trial {trial}: cursor of {k} moved back {last[k]} -> {v}"
        moved += sum(now[k] != last[k] for k in now if k[2] == "ticks_1m")
        last = now
    assert moved > 0, "the runner never got to the ticks before being killed"

    for _ in range(5):
        p = h.run_cli(dsn, "run", "--until-idle", "--workers", "1", "--lease-seconds", "2")
        assert p.returncode == 0, p.stderr[-3000:]
        left = conn.execute(
            "SELECT max(lease_expires_at) AS until, count(*) AS n FROM tickagg.data_agg_state"
            " WHERE status = 'running'"
        ).fetchone()
        if left["n"] == 0 and h.pending_invalidations(conn) == 0:
            break
        # wait for the killed runner's lease to expire (not an assertion on time)
        time.sleep(
            max(
                0.0,
                (left["until"] - conn.execute("SELECT now() AS n").fetchone()["n"]).total_seconds(),
            )
            + 0.2
        )
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
