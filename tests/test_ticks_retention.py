"""Ticks retention: partitions ahead; only partitions wholly older than the
window are dropped, never one holding minutes a ticks_1m task still needs; the
live gap scan never looks back further than retention."""

from __future__ import annotations

import datetime as dt
import threading

import helpers as h

UTC = dt.UTC


def partitions(conn) -> list[str]:
    return [
        r["relname"]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'tickagg.ticks'::regclass ORDER BY 1"
        )
    ]


def name(day: dt.date) -> str:
    return f"ticks_p{day:%Y%m%d}"


def setup_old_ticks(conn, days_back: int = 12) -> dt.date:
    """Partitions and one tick per day for the last `days_back` days (loaded as
    the owner: ingest itself refuses ticks older than retention)."""
    today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    for sym in ("RA", "RB"):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks')", (sym,)
        )
    start = dt.datetime.combine(today - dt.timedelta(days=days_back), dt.time(), UTC)
    h.sync(conn, start)
    conn.execute(
        "SELECT tickagg.ticks_ensure_partitions(%s, now())",
        (start,),
    )
    for d in range(days_back + 1):
        conn.execute(
            "INSERT INTO tickagg.ticks (canonical_symbol, ts_utc, last_price, size)"
            " VALUES ('RA', %s, 10, 1), ('RB', %s, 10, 1)",
            (start + dt.timedelta(days=d, hours=12),) * 2,
        )
    return today


def retention(conn) -> dict:
    return conn.execute("SELECT tickagg.ticks_retention_run() AS r").fetchone()["r"]


def test_drops_only_old_partitions_no_task_needs(conn):
    today = setup_old_ticks(conn)
    # RA's ticks_1m task is caught up; RB's stopped 9 days ago (cursor inside an old day)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = CASE canonical_symbol"
        " WHEN 'RA' THEN date_trunc('minute', now())"
        " ELSE date_trunc('day', now()) - interval '9 days' + interval '6 hours' END"
        " WHERE task_kind = 'ticks_1m'"
    )
    res = retention(conn)
    # retention 7 days: days ending at or before now - 7 days are old;
    # RB still needs its cursor's day (today - 9) and every later one
    old = [name(today - dt.timedelta(days=d)) for d in range(8, 13)]
    assert sorted(res["partitions_dropped"]) == [
        name(today - dt.timedelta(days=d)) for d in (12, 11, 10)
    ]
    assert set(res["partitions_held"]) == {name(today - dt.timedelta(days=d)) for d in (9, 8)}
    ahead = {name(today + dt.timedelta(days=d)) for d in range(0, 4)}
    assert ahead <= set(partitions(conn))
    for p in old[:2]:
        assert p in partitions(conn)

    # RB catches up: the held partitions go on the next run
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = date_trunc('minute', now())"
        " WHERE task_kind = 'ticks_1m'"
    )
    res = retention(conn)
    assert set(res["partitions_dropped"]) == {name(today - dt.timedelta(days=d)) for d in (9, 8)}
    assert partitions(conn)[0] == name(today - dt.timedelta(days=7))
    # a queued late minute holds its partition like a cursor does
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '2 days' WHERE setting_key = 'ticks_retention'"
    )
    conn.execute(
        "INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)"
        " SELECT 'RA', '1m', tstzrange(d, d + interval '1 minute')"
        " FROM (SELECT date_trunc('day', now()) - interval '4 days 12 hours' AS d) AS x"
    )
    res = retention(conn)
    assert set(res["partitions_dropped"]) == {name(today - dt.timedelta(days=d)) for d in (7, 6)}
    assert name(today - dt.timedelta(days=5)) in res["partitions_held"]


def test_disabled_task_does_not_hold_and_runner_task_runs(dsn, conn):
    today = setup_old_ticks(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false"
        " WHERE task_kind = 'ticks_1m' AND canonical_symbol = 'RB'"
    )
    # nor do the late minutes it had queued when it was disabled (found in review)
    conn.execute(
        "INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)"
        " SELECT 'RB', '1m', tstzrange(d, d + interval '1 minute')"
        " FROM (SELECT date_trunc('day', now()) - interval '10 days 12 hours' AS d) AS x"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = date_trunc('minute', now())"
        " WHERE task_kind = 'ticks_1m' AND canonical_symbol = 'RA'"
    )
    h.rollups_only(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = true WHERE task_kind = 'ticks_retention'"
    )
    h.drive(dsn)  # the ticks_retention tasks run like the runner runs them
    assert partitions(conn)[0] == name(today - dt.timedelta(days=7))
    # half an hour after its last run, half an hour before its next: not lagging
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = now() - interval '30 minutes',"
        " next_run_at = now() + interval '30 minutes' WHERE task_kind = 'ticks_retention'"
    )
    health = {
        (r["canonical_symbol"], r["task_kind"]): r["status"]
        for r in conn.execute(
            "SELECT * FROM tickagg.aggregation_health WHERE task_kind = 'ticks_retention'"
        )
    }
    assert set(health.values()) == {"HEALTHY"}, health
    storage = conn.execute("SELECT * FROM tickagg.ticks_storage").fetchone()
    assert storage["oldest_day"] == today - dt.timedelta(days=7)
    assert storage["retention"] == "7 days" and storage["partitions"] == len(partitions(conn))


def test_live_gap_scan_never_looks_back_past_retention(conn):
    setup_old_ticks(conn)
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '1 day' WHERE setting_key = 'ticks_retention'"
    )
    res = conn.execute("SELECT tickagg.gap_scan_run('RA', 'live') AS r").fetchone()["r"]
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    start = dt.datetime.fromisoformat(res["window_from"])
    assert start >= now - dt.timedelta(days=1, minutes=5)


def test_a_partition_in_use_is_left_for_the_next_run(dsn, conn):
    """A long transaction reading an old partition does not make retention (or
    every producer queued behind it) wait: that drop is reported busy and done
    on the next run."""
    import psycopg
    from psycopg import sql

    today = setup_old_ticks(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = date_trunc('minute', now())"
        " WHERE task_kind = 'ticks_1m'"
    )
    old = name(today - dt.timedelta(days=10))
    with psycopg.connect(dsn) as reader:
        # holds a lock on the partition until commit
        reader.execute(sql.SQL("SELECT count(*) FROM tickagg.{}").format(sql.Identifier(old)))
        res = retention(conn)
        assert old in res["busy"] and old not in res["partitions_dropped"]
        assert name(today - dt.timedelta(days=11)) in res["partitions_dropped"]
    res = retention(conn)
    assert old in res["partitions_dropped"] and res["busy"] == []


def test_two_sessions_creating_the_same_day_both_succeed(conn, dsn):
    """The second session waits on the first's advisory lock, then meets the
    first's committed partition (found in review: it failed with DuplicateTable)."""
    day = "2031-03-04"
    call = "SELECT tickagg.ticks_ensure_partitions(%s::timestamptz, %s::timestamptz) AS r"
    with h.connect(dsn) as first, h.connect(dsn) as second:
        first.autocommit = False
        assert first.execute(call, (day, day)).fetchone()["r"] == ["ticks_p20310304"]
        outcome: dict = {}

        def create_too() -> None:
            try:
                outcome["created"] = second.execute(call, (day, day)).fetchone()["r"]
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = repr(exc)

        waiter = threading.Thread(target=create_too)
        waiter.start()
        with h.connect(dsn) as watcher:
            h.wait_until_blocked(watcher, second.info.backend_pid, first.info.backend_pid)
        first.commit()
        waiter.join(10)
    assert outcome == {"created": []}, outcome
    assert "ticks_p20310304" in partitions(conn)
