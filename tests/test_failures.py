"""Hard and transient failures, backoff, fencing, release, streak reset: through
the SQL API, and through the real runner executing a task whose SQL raises."""

from __future__ import annotations

import datetime as dt

import helpers as h
import psycopg
import pytest
from oracle import Bar1m

UTC = dt.UTC
START = dt.datetime(2025, 3, 3, tzinfo=UTC)


def setup_symbol(conn, sym="FAIL", mandatory=False):
    # one task per (symbol, timeframe): these tests pick tasks by the two
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = 'false'"
        " WHERE setting_key = 'indicators_enabled'"
    )
    h.register(conn, sym, "crypto_24x7", mandatory=mandatory)
    h.sync(conn, START)


def task(conn, sym="FAIL", tf="5m"):
    return conn.execute(
        "SELECT * FROM tickagg.data_agg_state WHERE canonical_symbol = %s AND timeframe = %s",
        (sym, tf),
    ).fetchone()


def claim(conn, sym="FAIL", tf="5m", at=None, lease=60):
    """Claim one specific task at p_now = at (default now())."""
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = '2000-01-01 00:00+00'"
        " WHERE canonical_symbol = %s"
        " AND timeframe = %s AND status = 'idle'",
        (sym, tf),
    )
    rows = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', coalesce(%s, now()), 1000, %s)",
        (at, lease),
    ).fetchall()
    mine = [r for r in rows if (r["canonical_symbol"], r["timeframe"]) == (sym, tf)]
    # hand the others back untouched
    for r in rows:
        if r not in mine:
            finish(conn, r, "release")
    assert len(mine) == 1, rows
    return mine[0]


def finish(conn, t, outcome, **kw):
    return conn.execute(
        "SELECT tickagg.agg_finish(%s, %s, %s, %s, %s, %s, %s, %s) AS r",
        (
            t["canonical_symbol"],
            t["timeframe"],
            t["task_kind"],
            t["claim_token"],
            outcome,
            kw.get("cursor_from"),
            kw.get("cursor_to"),
            kw.get("error"),
        ),
    ).fetchone()["r"]


@pytest.mark.parametrize(("mandatory", "final"), [(True, "hard_failed"), (False, "disabled")])
def test_three_hard_failures(conn, mandatory, final):
    setup_symbol(conn, mandatory=mandatory)
    for n in (1, 2, 3):
        t = claim(conn)
        res = finish(conn, t, "hard", error=f"boom {n}")
        s = task(conn)
        assert s["hard_fail_streak"] == n and res["streak"] == n
        assert s["status"] == (final if n == 3 else "idle"), (n, s)
        assert s["claim_token"] is None and s["last_error"] == f"boom {n}"
    assert s["failures_total"] == 3 and s["runs_total"] == 3
    # neither is claimable any more
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = '2000-01-01 00:00+00'")
    due = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1000, 60)"
    ).fetchall()
    assert ("FAIL", "5m") not in {(r["canonical_symbol"], r["timeframe"]) for r in due}


def test_transient_backoff_grows_with_jitter_bounds(conn):
    setup_symbol(conn)
    delays = []
    for n in (1, 2, 3, 4):
        t = claim(conn)
        with conn.transaction():
            row = conn.execute(
                "SELECT tickagg.agg_finish(%s, %s, 'rollup', %s, 'transient', p_error => 'x') AS r,"
                " now() AS now",
                (t["canonical_symbol"], t["timeframe"], t["claim_token"]),
            ).fetchone()
            s = task(conn)
        delay = (s["next_run_at"] - row["now"]).total_seconds()
        base = 5 * 2 ** (n - 1)
        assert 0.75 * base - 1e-3 <= delay <= 1.25 * base + 1e-3, (n, delay)
        assert (
            s["transient_fail_streak"] == n and s["hard_fail_streak"] == 0 and s["status"] == "idle"
        )
        # not due before its time, even with invalidations pending
        due = conn.execute("SELECT * FROM tickagg.agg_get_due_tasks('prod', now())").fetchall()
        assert ("FAIL", "5m") not in {(r["canonical_symbol"], r["timeframe"]) for r in due}
        delays.append(delay)
    for a, b in zip(delays, delays[1:], strict=False):
        assert b > a  # 2x base with +-25 % jitter always grows


def test_success_resets_streaks(conn):
    setup_symbol(conn)
    for outcome in ("hard", "transient", "hard"):
        finish(conn, claim(conn), outcome, error="e")
    s = task(conn)
    assert (s["hard_fail_streak"], s["transient_fail_streak"]) == (2, 1)
    t = claim(conn)
    res = conn.execute(
        "SELECT tickagg.catchup_aggregation_range('FAIL', '5m', %s) AS r", (t["cursor_ts"],)
    ).fetchone()["r"]
    finish(conn, t, "success", cursor_from=res["cursor_from"], cursor_to=res["cursor_to"])
    s = task(conn)
    assert (s["hard_fail_streak"], s["transient_fail_streak"], s["status"], s["last_error"]) == (
        0,
        0,
        "idle",
        None,
    )
    assert s["last_successful_at_utc"] is not None and s["runs_total"] == 4


def test_release_counts_no_attempt(conn):
    setup_symbol(conn)
    before = task(conn)
    t = claim(conn)
    finish(conn, t, "release")
    s = task(conn)
    assert s["status"] == "idle" and s["claim_token"] is None
    for col in (
        "runs_total",
        "failures_total",
        "hard_fail_streak",
        "transient_fail_streak",
        "last_agg_bar_ts_utc",
    ):
        assert s[col] == before[col], col


def test_fencing_after_lease_takeover(conn):
    setup_symbol(conn)
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    old = claim(conn, lease=1, at=now)
    new = claim_expired(conn, at=now + dt.timedelta(seconds=5))
    assert new["claim_token"] != old["claim_token"]
    snapshot = task(conn)
    res = conn.execute(
        "SELECT tickagg.catchup_aggregation_range('FAIL', '5m', %s) AS r", (old["cursor_ts"],)
    ).fetchone()["r"]
    for outcome in ("success", "transient", "hard", "release"):
        with pytest.raises(psycopg.Error) as ei:
            with conn.transaction():
                finish(
                    conn, old, outcome, cursor_from=res["cursor_from"], cursor_to=res["cursor_to"]
                )
        assert ei.value.sqlstate == "TK001", outcome
        assert task(conn) == snapshot, outcome
    # success with the right token but a stale cursor is fenced too
    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET last_agg_bar_ts_utc = last_agg_bar_ts_utc + interval '5 minutes'"
        " WHERE canonical_symbol = 'FAIL' AND timeframe = '5m'"
    )
    snapshot = task(conn)
    with pytest.raises(psycopg.Error) as ei:
        finish(conn, new, "success", cursor_from=res["cursor_from"], cursor_to=res["cursor_to"])
    assert ei.value.sqlstate == "TK001"
    assert task(conn) == snapshot
    # the current holder finishes normally
    finish(conn, new, "release")
    assert task(conn)["status"] == "idle"


def claim_expired(conn, at):
    rows = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', %s, 1000, 60)", (at,)
    ).fetchall()
    mine = [r for r in rows if (r["canonical_symbol"], r["timeframe"]) == ("FAIL", "5m")]
    assert len(mine) == 1, rows
    return mine[0]


FAILING_TRIGGER = """
CREATE FUNCTION public.fail_for_symbol() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.canonical_symbol = 'BAD' THEN
        RAISE EXCEPTION 'simulated storage failure for %', NEW.canonical_symbol
            USING ERRCODE = %(code)s;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_for_symbol BEFORE INSERT ON tickagg.derived_data_bars
FOR EACH ROW EXECUTE FUNCTION public.fail_for_symbol();
"""


@pytest.mark.parametrize(("mandatory", "final"), [(True, "hard_failed"), (False, "disabled")])
def test_runner_hard_failures_via_real_sql_error(dsn, conn, mandatory, final):
    """The runner executes a task whose SQL raises (a test trigger refuses the
    derived bars of BAD): 3 runs -> hard_failed / disabled; GOOD is unaffected."""
    conn.execute(FAILING_TRIGGER.replace("%(code)s", "'XX001'"))
    setup_symbol(conn, "BAD", mandatory=mandatory)
    setup_symbol(conn, "GOOD")
    t0 = dt.datetime(2025, 3, 4, tzinfo=UTC)
    bars = {t0 + dt.timedelta(minutes=i): Bar1m(10.0, 11.0, 9.0, 10.5, 1.0) for i in range(60)}
    h.insert_bars(conn, "BAD", bars)
    h.insert_bars(conn, "GOOD", bars)
    for n in (1, 2, 3):
        p = h.run_cli(dsn, "run", "--until-idle")
        # a failed run leaves the bars incomplete: exit 5, saying so
        assert p.returncode == 5 and "incomplete: 1 runs failed" in p.stderr, p.stderr[-3000:]
        s = task(conn, "BAD")
        assert s["hard_fail_streak"] == n, (n, s)
        assert "simulated storage failure" in s["last_error"]
        conn.execute(
            "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE canonical_symbol = 'BAD'"
        )
    assert s["status"] == final
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM tickagg.derived_data_bars"
            " WHERE canonical_symbol = 'GOOD' AND timeframe = '1h'"
        ).fetchone()["n"]
        == 1
    )
    assert task(conn, "GOOD")["hard_fail_streak"] == 0


def test_runner_transient_failure_backs_off(dsn, conn):
    conn.execute(FAILING_TRIGGER.replace("%(code)s", "'40001'"))  # serialization_failure
    setup_symbol(conn, "BAD")
    h.insert_bars(
        conn, "BAD", {dt.datetime(2025, 3, 4, tzinfo=UTC): Bar1m(10.0, 11.0, 9.0, 10.5, 1.0)}
    )
    p = h.run_cli(dsn, "run", "--until-idle")
    assert p.returncode == 5 and "backing off" in p.stderr, p.stderr[-3000:]
    s = task(conn, "BAD")
    assert (s["transient_fail_streak"], s["hard_fail_streak"], s["status"]) == (1, 0, "idle")
    wait = conn.execute(
        "SELECT next_run_at - last_attempt_at_utc AS w FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'BAD' AND timeframe = '5m'"
    ).fetchone()["w"]
    assert wait > dt.timedelta(seconds=3.7)
