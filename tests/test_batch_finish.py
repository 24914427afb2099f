"""A batch's finish (agg_finish_batch) is one set-based step, not agg_finish per
task, and leaves every task, and the tasks built on it, exactly as the per-task
path (agg_run_rollup: catch-up + agg_finish) leaves them: cursor, pending bucket,
next run, counters, and the dependents its new cursor closes.

Each case is a pair of symbols with the same bars, A run per task and B in one
batch. The day is in the future, so no bucket closes by the clock: what is due
follows from the data alone."""

from __future__ import annotations

import datetime as dt
import uuid

import helpers as h
import psycopg
import pytest
from oracle import Bar1m
from psycopg.types.json import Jsonb

FINISH = "tickagg.agg_finish(text,text,text,uuid,text,timestamptz,timestamptz,text,integer,boolean)"

# case -> (minutes [0, n) of the day landed, max_windows)
CASES = {
    "CLOSE5": (5, None),  # closes one 5m bucket; due again when 15m can close
    "CLOSE15": (15, None),  # closes three, and the 15m bucket: wakes 15m
    "OPEN": (3, None),  # closes nothing: the run writes nothing
    "MORE": (15, 1),  # one bucket a run: continues
    "WOKEN": (5, None),  # its source wrote during the run: due again at once
}


def bar(m: int) -> Bar1m:
    return Bar1m(100.0 + m, 101.0 + m, 99.0 + m, 100.5 + m, 1.0 + m % 7, 100.25 + m, 3)


def claim_5m(conn, symbols: list[str]) -> list[dict]:
    """Claim the 5m tasks of these symbols as agg_get_due_tasks does."""
    return conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '5 minutes', running_started_at_utc = now(),"
        " last_attempt_at_utc = now()"
        " WHERE canonical_symbol = ANY(%s) AND timeframe = '5m' AND task_kind = 'rollup'"
        " RETURNING canonical_symbol, timeframe, task_kind, claim_token,"
        " last_agg_bar_ts_utc AS cursor_ts",
        (symbols,),
    ).fetchall()


def task_rows(conn, since: dt.datetime) -> dict:
    """Every rollup task's state by (case, timeframe), next_run_at as 'now' (made
    due during the test), 'recheck' (idle_recheck_interval after a finish in the
    test or the setup before it) or the time itself (a bucket's end plus the delay)."""
    rows = conn.execute(
        "SELECT s.*, clock_timestamp() AS now,"
        " tickagg.setting('idle_recheck_interval')::interval AS recheck"
        " FROM tickagg.data_agg_state AS s WHERE s.task_kind = 'rollup'"
    ).fetchall()
    out = {}
    for r in rows:
        nxt = r["next_run_at"]
        if since <= nxt <= r["now"]:
            nxt = "now"
        elif since - dt.timedelta(minutes=10) + r["recheck"] <= nxt <= r["now"] + r["recheck"]:
            nxt = "recheck"
        out[r["canonical_symbol"], r["timeframe"]] = {
            "next_run_at": nxt,
            **{
                k: r[k]
                for k in (
                    "last_agg_bar_ts_utc", "pending_bucket_end", "status", "claim_token",
                    "hard_fail_streak", "transient_fail_streak", "runs_total",
                    "bars_written_total", "last_error",
                )
            },
        }  # fmt: skip
    return out


def test_a_batch_finish_is_set_based_and_leaves_tasks_as_agg_finish_does(conn, dsn):
    day = conn.execute("SELECT date_trunc('day', now()) + interval '3 days' AS d").fetchone()["d"]
    for case in CASES:
        for path in "AB":
            h.register(conn, f"{case}_{path}", "crypto_24x7")
    h.sync(conn, day)
    h.rollups_only(conn)
    # longer than the wait for the future day's buckets, so those times show
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '30 days'"
        " WHERE setting_key = 'idle_recheck_interval'"
    )
    h.drive(dsn)
    for case, (minutes, max_windows) in CASES.items():
        for path in "AB":
            sym = f"{case}_{path}"
            h.insert_bars(
                conn, sym, {day + dt.timedelta(minutes=m): bar(m) for m in range(minutes)}
            )
            conn.execute(
                "UPDATE tickagg.data_agg_state SET max_windows = %s"
                " WHERE canonical_symbol = %s AND task_kind = 'rollup'",
                (max_windows, sym),
            )
    since = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]

    per_task = claim_5m(conn, [f"{c}_A" for c in CASES])
    batch = claim_5m(conn, [f"{c}_B" for c in CASES])
    # written by their source during the run (its trigger moved next_run_at)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = clock_timestamp()"
        " WHERE canonical_symbol LIKE 'WOKEN_%' AND timeframe = '5m' AND task_kind = 'rollup'"
    )
    for t in per_task:
        conn.execute(
            "SELECT tickagg.agg_run_rollup(%s, '5m', %s, %s, %s, now())",
            (t["canonical_symbol"], t["claim_token"], t["cursor_ts"], uuid.uuid4()),
        )
    conn.execute("SET track_functions = 'all'")
    with conn.transaction():
        rows = h.run_batch(conn, "agg_run_rollup_batch", "5m", batch, [uuid.uuid4() for _ in batch])
        finishes = conn.execute(
            "SELECT pg_stat_get_xact_function_calls(%s::regprocedure) AS n", (FINISH,)
        ).fetchone()["n"]
    assert {r["outcome"] for r in rows} == {"success"}
    assert not finishes, f"agg_finish ran {finishes} times in a batch"

    state = task_rows(conn, since)
    for case in CASES:
        for timeframe in ("5m", "15m", "30m", "1h", "4h", "1d", "1w"):
            a, b = state[f"{case}_A", timeframe], state[f"{case}_B", timeframe]
            assert a == b, (case, timeframe)
    # the cases are what they say they are
    five = {c: state[f"{c}_B", "5m"] for c in CASES}
    assert five["MORE"]["next_run_at"] == "now"
    assert five["WOKEN"]["next_run_at"] == "now"
    assert five["CLOSE5"]["next_run_at"] == day + dt.timedelta(minutes=17)  # 15m end + delay
    assert five["OPEN"]["last_agg_bar_ts_utc"] == day
    assert state["CLOSE15_B", "15m"]["next_run_at"] == "now"
    assert state["CLOSE5_B", "15m"]["next_run_at"] != "now"


def test_a_batch_finish_is_fenced(conn, dsn):
    """A task whose claim changed between the batch's fencing and its finish (it
    cannot, while the batch holds its row: this calls the finish directly) makes
    the whole finish fail with TK001 and change nothing."""
    h.register(conn, "FENCE", "crypto_24x7")
    h.sync(conn, dt.datetime(2025, 10, 1, tzinfo=dt.UTC))
    h.rollups_only(conn)
    (t,) = claim_5m(conn, ["FENCE"])
    since = dt.datetime.now(dt.UTC)
    before = task_rows(conn, since)["FENCE", "5m"]
    result = Jsonb({"cursor_to": None, "bars_written": 0, "continue": False})
    with pytest.raises(psycopg.Error) as raised:
        conn.execute(
            "SELECT tickagg.agg_finish_batch('rollup', '5m', %s, %s, %s, %s, now(), %s::jsonb[])",
            (["FENCE"], [uuid.uuid4()], [t["cursor_ts"]], [uuid.uuid4()], [result]),
        )
    assert raised.value.sqlstate == "TK001"
    assert task_rows(conn, since)["FENCE", "5m"] == before
