"""ticks_1m tasks run when their ticks give them work, not every minute (issue 24):
a silent symbol (a closed market, a pair nobody trades) costs no runs; the first
tick of a minute schedules the task for that minute's close (once, whatever
follows); a run that read ticks of the still-open minute is due at its close, not
at once; a symbol that went silent is due when the open bucket of a level above
that holds its last bars ends (the ticks cursor must pass that end to close it).
With the real ticks_1m delay, in real time: assertions are on schedules, never on
durations."""

from __future__ import annotations

import datetime as dt

import helpers as h
import psycopg

from runner.loop import Runner, RunnerConfig

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
# crypto_24x7 buckets are UTC-epoch aligned; 1w left out: a 1d bucket always ends first
STEPS = {"5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440}


def setup(conn, dsn) -> None:
    """SIL (tick-fed crypto, never a tick) and TW, from an hour ago, caught up."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    for sym in ("SIL", "TW"):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks')", (sym,)
        )
    h.sync(conn, start)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false"
        " WHERE task_kind NOT IN ('ticks_1m', 'rollup')"
    )
    h.drive(dsn)


def task(conn, sym: str) -> dict:
    return conn.execute(
        "SELECT last_agg_bar_ts_utc AS cursor, next_run_at, aggregation_delay AS delay, status"
        " FROM tickagg.data_agg_state WHERE canonical_symbol = %s AND task_kind = 'ticks_1m'",
        (sym,),
    ).fetchone()


def tick(conn, sym: str, ts: dt.datetime, price: float = 10.0) -> None:
    conn.execute(
        "SELECT tickagg.ingest_ticks(ARRAY[%s], ARRAY[%s::timestamptz],"
        " p_last_price => ARRAY[%s::float8], p_size => ARRAY[1::float8])",
        (sym, ts, price),
    )


def run_ticks_task_now(dsn, conn, sym: str) -> None:
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now()"
        " WHERE canonical_symbol = %s AND task_kind = 'ticks_1m'",
        (sym,),
    )
    h.drive(dsn)


def open_bucket_end(cursor: dt.datetime, newest_bar: dt.datetime) -> dt.datetime:
    """The earliest end after the cursor of a bucket (any level) that holds the
    newest 1m bar: epoch arithmetic, independent of the calendar functions."""
    last_closed = int((cursor - MINUTE).timestamp()) // 60
    ends = []
    for minutes in STEPS.values():
        lower = last_closed // minutes * minutes
        end = dt.datetime.fromtimestamp((lower + minutes) * 60, UTC)
        if lower * 60 <= newest_bar.timestamp() and end > cursor:
            ends.append(end)
    return min(ends)


def test_a_silent_symbol_costs_no_runs(dsn, conn):
    setup(conn, dsn)
    silent = task(conn, "SIL")
    assert silent["status"] == "idle"
    # not the next minute's close: only its recheck (a day) or a tick schedules it
    assert silent["next_run_at"] > silent["cursor"] + dt.timedelta(hours=1)
    conn.execute("TRUNCATE tickagg.ops_runlog")
    ran = Runner(RunnerConfig(dsn=dsn)).run_due()
    assert [t for t in ran if t["task_kind"] == "ticks_1m"] == []


def test_the_first_tick_of_a_minute_schedules_its_close_once(dsn, conn):
    setup(conn, dsn)
    before = task(conn, "TW")
    silent = task(conn, "SIL")
    assert before["next_run_at"] > before["cursor"] + dt.timedelta(hours=1)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN tickagg_work")
        tick(conn, "TW", before["cursor"] + dt.timedelta(seconds=1))
        assert sum(1 for _ in listener.notifies(timeout=0.5)) == 1
        close = before["cursor"] + MINUTE + before["delay"]
        assert task(conn, "TW")["next_run_at"] == close
        for s in (2, 3, 4):
            tick(conn, "TW", before["cursor"] + dt.timedelta(seconds=s))
        assert sum(1 for _ in listener.notifies(timeout=0.5)) == 0
        assert task(conn, "TW")["next_run_at"] == close
    assert task(conn, "SIL") == silent  # another symbol's ticks schedule nothing of it


def test_a_run_is_scheduled_by_the_ticks_it_read(dsn, conn):
    setup(conn, dsn)
    cursor = task(conn, "TW")["cursor"]
    first = cursor + dt.timedelta(seconds=1)
    tick(conn, "TW", first)
    run_ticks_task_now(dsn, conn, "TW")  # a wake-up for a minute that is still open
    after = task(conn, "TW")
    newest_bar = conn.execute(
        "SELECT max(ts_utc) AS t FROM tickagg.data_bars WHERE canonical_symbol = 'TW'"
    ).fetchone()["t"]
    if after["cursor"] <= first:
        # the minute was still open: due at its close, not at once
        assert newest_bar is None
        assert after["next_run_at"] == after["cursor"] + MINUTE + after["delay"]
    else:
        # the minute closed meanwhile and was written: due when its open bucket ends
        assert newest_bar == cursor
        assert after["next_run_at"] == open_bucket_end(after["cursor"], newest_bar) + after["delay"]


def test_a_symbol_gone_silent_is_due_when_its_open_bucket_ends(dsn, conn):
    setup(conn, dsn)
    cursor = task(conn, "TW")["cursor"]
    late = cursor - 2 * MINUTE
    tick(conn, "TW", late + dt.timedelta(seconds=5))  # behind the cursor: due at once
    assert task(conn, "TW")["next_run_at"] <= conn.execute("SELECT now() AS n").fetchone()["n"]
    h.drive(dsn)
    after = task(conn, "TW")
    newest_bar = conn.execute(
        "SELECT max(ts_utc) AS t FROM tickagg.data_bars WHERE canonical_symbol = 'TW'"
    ).fetchone()["t"]
    assert newest_bar == late
    assert after["next_run_at"] == open_bucket_end(after["cursor"], newest_bar) + after["delay"]
    # and no sooner: a run now would find nothing to do
    assert after["next_run_at"] > after["cursor"]
