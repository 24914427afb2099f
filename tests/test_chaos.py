"""The chaos suite's short form (chaos/run_chaos.py --short), so CI runs it: every
attack against a cluster of its own, nothing lost or duplicated, every failure
either fixed or listed as a known defect. It prints its seed; a failure names the
command that replays it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, cli_env


@pytest.mark.timeout(900)
def test_chaos_short_form_loses_nothing():
    seed = os.environ.get("TICKAGG_CHAOS_SEED") or str(int.from_bytes(os.urandom(4), "big"))
    p = subprocess.run(
        [sys.executable, str(ROOT / "chaos" / "run_chaos.py"), "--short", "--seed", seed],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=880,
    )
    print(p.stdout[-6000:])
    assert p.returncode == 0, (
        f"chaos --short --seed {seed} failed (exit {p.returncode}):\n"
        f"{p.stdout[-6000:]}\n{p.stderr[-2000:]}"
    )
    assert "lost/dup" in p.stdout, "the suite printed no result table"


def test_a_database_error_no_command_translated_is_one_line_and_exit_4(monkeypatch):
    """Found by the chaos suite's restart attack: `ingest bars` lost its connection
    at a chunk's savepoint commit and printed a 40-line psycopg traceback, exit 1.
    Any command's untranslated psycopg error is one `error:` line (exit 4 when the
    connection is gone)."""
    import psycopg
    from click.testing import CliRunner

    from runner import cli

    def lost(*args, **kwargs):
        raise psycopg.OperationalError(
            "consuming input failed: server closed the connection unexpectedly"
        )

    monkeypatch.setattr(cli.db, "make_pool", lost)
    res = CliRunner().invoke(
        cli.cli, ["--dsn", "host=127.0.0.1 password=Sekrit1", "status"], catch_exceptions=False
    )
    assert res.exit_code == cli.EXIT_UNAVAILABLE, res.output
    assert res.output.startswith("error: consuming input failed"), res.output
    assert "Traceback" not in res.output and "Sekrit1" not in res.output
