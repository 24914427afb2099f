"""Database outages: a `tickagg run` daemon rides out a stopped server for longer
than its pool timeout (no exit, no traceback, a few log lines) and catches up
exactly once the server is back; a daemon started before its server waits for it;
`run --until-idle` gives up after --connect-timeout with one error line and exit 4."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import time

import helpers as h
import pytest
from oracle import diff, expected_bars, random_bars

from runner.embedded_pg import free_port

UTC = dt.UTC
POOL_TIMEOUT = 2  # seconds; the outage below lasts several of them


def _wait_until(what: str, proc: subprocess.Popen, log_path, done, timeout: float = 180):
    """Poll done() until true while the daemon stays alive (a hang guard, not a timing)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None, f"daemon exited:\n{log_path.read_text()[-3000:]}"
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)


def test_daemon_rides_out_an_outage_longer_than_the_pool_timeout(embedded_pg, dsn, conn, tmp_path):
    rng = random.Random(24)
    agg_start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    bars = random_bars("crypto_24x7", dt.date(2025, 3, 1), dt.date(2025, 3, 4), rng)
    h.register(conn, "OUT", "crypto_24x7")
    h.sync(conn, agg_start)
    h.insert_bars(conn, "OUT", bars)
    log_path = tmp_path / "runner.log"
    # small runs keep the workers busy, so the server goes away under running tasks
    # (the metrics thread refreshes every second: it too must not log every failure)
    cmd = h.tickagg_cmd(
        dsn, "run", "--workers", "2", "--max-windows", "5", "--poll-max", "1",
        "--pool-timeout", str(POOL_TIMEOUT),
        "--metrics-port", str(free_port()), "--metrics-interval", "1",
    )  # fmt: skip
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=h.ROOT, env=h.cli_env(), stderr=log_file)
    try:
        _wait_until("bars written", proc, log_path, lambda: len(h.derived(conn, ["OUT"])) > 20)
        embedded_pg.stop()
        try:  # the server comes back whatever happens: later tests share it
            outage_ends = time.monotonic() + 5 * POOL_TIMEOUT
            while time.monotonic() < outage_ends:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.5)
        finally:
            embedded_pg.start()
        with h.connect(dsn) as c:
            # a day written after the outage: the daemon must pick it up too
            more = random_bars("crypto_24x7", dt.date(2025, 3, 5), dt.date(2025, 3, 5), rng)
            h.insert_bars(c, "OUT", more)
            bars.update(more)
            expected = expected_bars("OUT", "crypto_24x7", bars, agg_start)
            _wait_until(
                "caught up with the oracle",
                proc,
                log_path,
                lambda: not diff(expected, h.derived(c, ["OUT"])),
            )
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    with h.connect(dsn) as c:
        problems = diff(expected, h.derived(c, ["OUT"]))
        assert not problems, "\n".join(problems)
        running = c.execute(
            "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE status = 'running'"
        ).fetchone()["n"]
        assert running == 0
    text = log_path.read_text()
    assert "Traceback" not in text and "thread crashed" not in text, text[-3000:]
    # a line when it went and one when it came back, not one per attempt
    assert 1 <= text.count("database unavailable: ") <= 2, text[-3000:]
    assert "database available again" in text
    assert text.count("listener connection unavailable: ") <= 1, text[-3000:]
    assert "psycopg.pool" not in text, text[-3000:]
    assert text.count("metrics refresh failing: ") <= 1, text[-3000:]


def test_until_idle_gives_up_after_the_connect_timeout():
    down = f"host=127.0.0.1 port={free_port()} user=postgres dbname=tickagg connect_timeout=2"
    p = h.run_cli(down, "run", "--until-idle", "--connect-timeout", "2", timeout=60)
    assert p.returncode == 4, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: database unavailable for "), p.stderr
    assert "--connect-timeout 2" in last and "Connection refused" in last
    assert "Traceback" not in p.stderr


def test_daemon_started_before_its_database_waits_for_it(embedded_pg, dsn, conn, tmp_path):
    agg_start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    bars = random_bars("crypto_24x7", dt.date(2025, 3, 1), dt.date(2025, 3, 1), random.Random(7))
    h.register(conn, "OUT", "crypto_24x7")
    h.sync(conn, agg_start)
    h.insert_bars(conn, "OUT", bars)
    expected = expected_bars("OUT", "crypto_24x7", bars, agg_start)
    log_path = tmp_path / "runner.log"
    embedded_pg.stop()
    try:
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                h.tickagg_cmd(dsn, "run", "--poll-max", "1", "--pool-timeout", str(POOL_TIMEOUT)),
                cwd=h.ROOT,
                env=h.cli_env(),
                stderr=log_file,
            )
        _wait_until(
            "the wait reported",
            proc,
            log_path,
            lambda: "database unavailable" in log_path.read_text(),
        )
    finally:
        embedded_pg.start()
    try:
        with h.connect(dsn) as c:
            _wait_until(
                "caught up with the oracle",
                proc,
                log_path,
                lambda: not diff(expected, h.derived(c, ["OUT"])),
            )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "Traceback" not in text and "database available again" in text, text[-3000:]
