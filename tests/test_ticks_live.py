"""The live path: ticks that close a minute wake the ticks_1m task once
(coalesced NOTIFY), ticks inside the open minute wake nothing, late ticks wake
it; with a daemon running, a closed minute reaches its 1m and 5m bars."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time

import helpers as h
import psycopg

UTC = dt.UTC


def setup(conn):
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    start = now.replace(minute=now.minute // 5 * 5, second=0, microsecond=0) - dt.timedelta(
        minutes=50
    )
    conn.execute("SELECT tickagg.register_symbol('LV', 'crypto_24x7', p_source_kind => 'ticks')")
    h.sync(conn, start)
    # replayed past minutes close on the data rule only (see runner/tick_sim.py)
    conn.execute("SELECT tickagg.agg_task_set_delay('LV', '100 years', 'ticks_1m')")
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE task_kind = 'ticks_1m'"
    )
    return start


def tick(conn, ts: dt.datetime, price: float = 10.0) -> None:
    conn.execute(
        "SELECT tickagg.ingest_ticks(ARRAY['LV'], ARRAY[%s::timestamptz],"
        " p_last_price => ARRAY[%s::float8], p_size => ARRAY[1::float8])",
        (ts, price),
    )


def notifications(listener: psycopg.Connection) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.5))


def test_wakeups_are_coalesced(dsn, conn):
    start = setup(conn)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN tickagg_work")
        # ticks inside the cursor's minute: nothing to wake
        for s in (1, 2, 3):
            tick(conn, start + dt.timedelta(seconds=s))
        assert notifications(listener) == 0
        due = conn.execute(
            "SELECT next_run_at > now() AS later FROM tickagg.data_agg_state"
            " WHERE task_kind = 'ticks_1m'"
        ).fetchone()
        assert due["later"]
        # a tick of the next minute closes the first: one wake-up, however many follow
        for s in (61, 62, 125, 190):
            tick(conn, start + dt.timedelta(seconds=s))
        assert notifications(listener) == 1
    h.drive(dsn)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN tickagg_work")
        # a late tick (behind the cursor) wakes the task again, once
        tick(conn, start + dt.timedelta(seconds=30), 11.0)
        tick(conn, start + dt.timedelta(seconds=31), 12.0)
        assert notifications(listener) == 1
    h.drive(dsn)
    bar = conn.execute(
        "SELECT source, high, trade_count FROM tickagg.data_bars WHERE ts_utc = %s", (start,)
    ).fetchone()
    assert (bar["source"], bar["high"], bar["trade_count"]) == ("live_gap_filled", 12.0, 5)


def test_daemon_writes_closed_minutes_and_their_buckets(dsn, conn):
    start = setup(conn)
    p = subprocess.Popen(
        h.tickagg_cmd(dsn, "run", "--workers", "2"),
        cwd=h.ROOT,
        env=h.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for m in range(11):  # minutes 0..10: the last one stays open
            tick(conn, start + dt.timedelta(minutes=m, seconds=10), 10.0 + m)
        # wait for the daemon (bounded; the assertion is on the result, not the time)
        for _ in range(300):
            row = conn.execute(
                "SELECT count(*) AS n FROM tickagg.derived_data_bars"
                " WHERE canonical_symbol = 'LV' AND timeframe = '5m'"
            ).fetchone()
            if row["n"] == 2:
                break
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0, p.stderr.read()[-2000:]
    minutes = [
        r["ts_utc"]
        for r in conn.execute(
            "SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = 'LV' ORDER BY 1"
        )
    ]
    assert minutes == [start + dt.timedelta(minutes=m) for m in range(10)]
    fives = conn.execute(
        "SELECT ts_utc, open, close, source_candles FROM tickagg.derived_data_bars"
        " WHERE canonical_symbol = 'LV' AND timeframe = '5m' ORDER BY 1"
    ).fetchall()
    assert [(r["ts_utc"], r["open"], r["close"], r["source_candles"]) for r in fives] == [
        (start, 10.0, 14.0, 5),
        (start + dt.timedelta(minutes=5), 15.0, 19.0, 5),
    ]


def test_tick_committed_during_a_run_is_never_lost(dsn, conn):
    """A producer's transaction inserts a tick of a minute the next run will
    close, and commits only after that run has started: the run waits for it
    (or the tick is recorded as late), so the minute's bar includes it."""
    import threading

    start = setup(conn)
    for m in range(5):
        tick(conn, start + dt.timedelta(minutes=m, seconds=10), 10.0)
    tick(conn, start + dt.timedelta(minutes=5, seconds=1), 10.0)  # closes minutes 0..4
    with psycopg.connect(dsn) as producer:
        producer.execute(
            "SELECT tickagg.ingest_ticks(ARRAY['LV'], ARRAY[%s::timestamptz],"
            " p_last_price => ARRAY[99::float8])",
            (start + dt.timedelta(minutes=2, seconds=40),),
        )
        run = threading.Thread(target=h.drive, args=(dsn,))
        run.start()
        time.sleep(0.5)  # let the run start while the tick is uncommitted (ordering only)
        producer.commit()
        run.join()
    h.drive(dsn)
    bar = conn.execute(
        "SELECT high, trade_count FROM tickagg.data_bars WHERE ts_utc = %s",
        (start + dt.timedelta(minutes=2),),
    ).fetchone()
    assert (bar["high"], bar["trade_count"]) == (99.0, 2)
