"""Scheduling: a task runs when it has work. A rollup task waits for the end of
the bucket at its cursor per its symbol's calendar (closed market time skipped,
a holiday moves it); a write makes it due only when it closes that bucket; with
no new data nothing is due; and under load every kind makes progress."""

from __future__ import annotations

import datetime as dt
import random

import helpers as h
from oracle import Bar1m, random_bars
from rich.console import Console

from runner import db, status
from runner.metrics import Metrics

UTC = dt.UTC


def bucket_end(conn, calendar: str, timeframe: str, cursor: str) -> dt.datetime:
    return conn.execute(
        "SELECT tickagg.rollup_bucket_end(%s, %s, %s::timestamptz) AS e",
        (calendar, timeframe, cursor),
    ).fetchone()["e"]


def utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_bucket_end_follows_the_calendar(conn):
    # crypto trades around the clock: the next 5m boundary, the next UTC midnight
    assert bucket_end(conn, "crypto_24x7", "5m", "2025-03-05 10:02+00") == utc("2025-03-05 10:05")
    assert bucket_end(conn, "crypto_24x7", "1d", "2025-03-05 00:00+00") == utc("2025-03-06 00:00")
    # us_equity after Friday's close (16:00 EST): nothing over the weekend; Monday
    # (after the DST switch of 2025-03-09) is the next bucket, for 5m and for 1d
    friday_close = "2025-03-07 21:00+00"
    assert bucket_end(conn, "us_equity", "5m", friday_close) == utc("2025-03-10 13:35")
    assert bucket_end(conn, "us_equity", "1d", friday_close) == utc("2025-03-10 20:00")
    # a 1d task during a session waits for that session's close; a 1w task for
    # the end of the trading week (where the next one opens)
    assert bucket_end(conn, "us_equity", "1d", "2025-03-07 14:30+00") == utc("2025-03-07 21:00")
    assert bucket_end(conn, "us_equity", "1w", "2025-03-10 13:30+00") == utc("2025-03-17 13:30")
    # a holiday on Monday moves the due time to Tuesday
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-03-10', NULL, 'test')")
    assert bucket_end(conn, "us_equity", "5m", friday_close) == utc("2025-03-11 13:35")
    assert bucket_end(conn, "us_equity", "1d", friday_close) == utc("2025-03-11 20:00")


def test_a_removed_holiday_brings_the_due_time_back(conn, dsn):
    """A holiday added after a task stored when its bucket closes moves that time
    later; removing the holiday again must bring it back, not leave the day's bar
    waiting for the next session."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    h.register(conn, "HOLI", "us_equity")
    h.sync(conn, now - dt.timedelta(days=4))
    h.drive(dsn)
    before = task(conn, "HOLI", "1d")
    assert before["pending_bucket_end"] is not None
    trading_date = conn.execute(
        "SELECT (%s::timestamptz AT TIME ZONE 'America/New_York')::date AS d",
        (before["pending_bucket_end"],),
    ).fetchone()["d"]
    conn.execute(
        "SELECT tickagg.calendar_set_holiday('us_equity', %s, NULL, 'test')", (trading_date,)
    )
    h.drive(dsn)
    moved = task(conn, "HOLI", "1d")
    assert moved["pending_bucket_end"] > before["pending_bucket_end"]
    assert moved["next_run_at"] > before["pending_bucket_end"] + moved["aggregation_delay"]

    conn.execute(
        "DELETE FROM tickagg.market_holidays"
        " WHERE calendar_code = 'us_equity' AND holiday_date = %s",
        (trading_date,),
    )
    back = task(conn, "HOLI", "1d")
    assert back["pending_bucket_end"] == before["pending_bucket_end"]
    assert back["next_run_at"] <= before["pending_bucket_end"] + back["aggregation_delay"]


def task(conn, symbol: str, timeframe: str, kind: str = "rollup") -> dict:
    return conn.execute(
        "SELECT *, now() AS now FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = %s AND timeframe = %s AND task_kind = %s",
        (symbol, timeframe, kind),
    ).fetchone()


def bar(volume: float) -> Bar1m:
    return Bar1m(100.0, 101.0, 99.0, 100.5, volume)


def test_writes_make_due_only_what_they_close(conn, dsn):
    today = conn.execute("SELECT date_trunc('day', now()) AS d").fetchone()["d"]
    yesterday = today - dt.timedelta(days=1)
    h.register(conn, "SCHED", "crypto_24x7")
    h.sync(conn, today - dt.timedelta(days=2))
    hole = yesterday + dt.timedelta(hours=12)
    h.insert_bars(
        conn,
        "SCHED",
        {
            yesterday + dt.timedelta(minutes=m): bar(1.0 + m % 7)
            for m in range(1440)
            if yesterday + dt.timedelta(minutes=m) != hole
        },
    )
    h.drive(dsn)

    # Caught up and no new data: nothing but the live gap scan (which looks
    # for silence) comes due within the next 23 hours.
    kinds = {
        r["task_kind"]
        for r in conn.execute(
            "SELECT task_kind"
            " FROM tickagg.agg_get_due_tasks('prod', now() + interval '23 hours', 1000)"
        ).fetchall()
    }
    assert kinds <= {"gap_scan"}, kinds
    day = task(conn, "SCHED", "1d")
    assert day["last_agg_bar_ts_utc"] == today
    assert day["pending_bucket_end"] == today + dt.timedelta(days=1)  # tonight, not every minute

    five = task(conn, "SCHED", "5m")
    end = five["pending_bucket_end"]
    assert end == five["last_agg_bar_ts_utc"] + dt.timedelta(minutes=5)
    # a minute that does not close the bucket: due when the bucket can close by time
    h.insert_bars(conn, "SCHED", {end - dt.timedelta(minutes=5): bar(2.0)})
    five = task(conn, "SCHED", "5m")
    assert five["next_run_at"] == end + five["aggregation_delay"]
    # the bucket's last minute closes it: due at once
    h.insert_bars(conn, "SCHED", {end - dt.timedelta(minutes=1): bar(3.0)})
    five = task(conn, "SCHED", "5m")
    assert five["next_run_at"] <= five["now"]
    assert task(conn, "SCHED", "1d")["next_run_at"] == day["next_run_at"]

    h.drive(dsn)
    assert task(conn, "SCHED", "5m")["last_agg_bar_ts_utc"] >= end
    after = task(conn, "SCHED", "1d")
    assert after["runs_total"] == day["runs_total"], "the 1d task ran before its day could close"

    # a late bar for a closed day: its 1d bar is right after one pass, at once
    h.insert_bars(conn, "SCHED", {hole: bar(1000.0)})
    h.drive(dsn)
    got = conn.execute(
        "SELECT d.volume, d.source_candles,"
        " (SELECT sum(b.volume) FROM tickagg.data_bars AS b WHERE b.canonical_symbol = 'SCHED'"
        "  AND b.timeframe = '1m' AND b.ts_utc >= %(d)s"
        "  AND b.ts_utc < %(d)s + interval '1 day') AS oracle"
        " FROM tickagg.derived_data_bars AS d"
        " WHERE d.canonical_symbol = 'SCHED' AND d.timeframe = '1d' AND d.ts_utc = %(d)s",
        {"d": yesterday},
    ).fetchone()
    assert got["source_candles"] == 1440
    assert got["volume"] == got["oracle"]


def backlog(conn) -> None:
    """A symbol with two days of history whose rollups materialise one bucket per
    run: they stay due for hundreds of runs (a backfill that outlasts the test)."""
    h.register(conn, "BACK", "crypto_24x7")
    h.sync(conn, dt.datetime(2025, 3, 1, tzinfo=UTC))
    h.insert_bars(
        conn,
        "BACK",
        random_bars("crypto_24x7", dt.date(2025, 3, 3), dt.date(2025, 3, 4), random.Random(7)),
    )
    conn.execute("UPDATE tickagg.data_agg_state SET max_windows = 1 WHERE task_kind = 'rollup'")


def claim_and_run(conn, ahead: str, claims: int) -> list[str]:
    """Claim one task at a time at now() + ahead (a daemon that far into the
    backlog: every task due now has waited that long) and run it."""
    kinds = []
    totals = {"claims": 0, "bars_written": 0, "bars_deleted": 0}
    for _ in range(claims):
        t = conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now() + %s::interval, 1, 300)",
            (ahead,),
        ).fetchone()
        assert t is not None
        kinds.append(t["task_kind"])
        h.run_claimed(conn, t, totals, max_windows=1)
    return kinds


def rollups_still_due(conn) -> bool:
    return conn.execute(
        "SELECT count(*) > 0 AS due FROM tickagg.agg_get_due_tasks('prod', now(), 1000)"
        " WHERE task_kind = 'rollup'"
    ).fetchone()["due"]


def test_rollups_first_during_a_backfill(conn):
    backlog(conn)
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '1 hour' WHERE setting_key = 'claim_max_wait'"
    )
    kinds = claim_and_run(conn, "0 seconds", 60)
    assert set(kinds) == {"rollup"}
    waiting = conn.execute(
        "SELECT count(*) AS n FROM tickagg.agg_get_due_tasks('prod', now(), 1000)"
        " WHERE task_kind = 'indicators'"
    ).fetchone()["n"]
    assert waiting > 0
    assert rollups_still_due(conn)


def test_no_kind_starves_while_rollups_stay_due(conn):
    backlog(conn)
    # every task due now has waited 10 minutes, past claim_max_wait (5 minutes)
    kinds = claim_and_run(conn, "10 minutes", 75)
    waiting = conn.execute(
        "SELECT timeframe, task_kind, runs_total FROM tickagg.data_agg_state"
        " WHERE enabled AND task_kind <> 'rollup' AND next_run_at <= now()"
    ).fetchall()
    assert any(w["task_kind"] == "indicators" for w in waiting)
    kinds += claim_and_run(conn, "10 minutes", 75)
    assert rollups_still_due(conn)
    # what was due at the half-way point has run since, whatever its kind
    for w in waiting:
        now = task(conn, "BACK", w["timeframe"], w["task_kind"])
        assert now["runs_total"] > w["runs_total"], (w, kinds)
    ran = conn.execute(
        "SELECT task_kind, min(runs_total) AS least_runs FROM tickagg.data_agg_state"
        " WHERE enabled AND task_kind IN ('gap_scan', 'gap_scan_history') GROUP BY task_kind"
    ).fetchall()
    assert len(ran) == 2 and all(r["least_runs"] > 0 for r in ran), ran


def test_status_and_metrics_show_the_oldest_wait_per_kind(conn, role_dsn):
    backlog(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() - interval '10 minutes'"
        " WHERE task_kind = 'indicators'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE task_kind LIKE 'gap_scan%'"
    )
    m = Metrics()
    with db.connect(role_dsn()) as rc:  # what the runner role may read
        m.refresh(rc)
        data = status.collect(rc)
    waits = {w["task_kind"]: w for w in data["waits"]}
    assert set(waits) == {"rollup", "indicators"}  # the gap scans are not due
    assert waits["indicators"]["due"] == 7
    assert waits["indicators"]["oldest_wait_seconds"] >= 600
    assert m.oldest_due_wait.labels(kind="indicators")._value.get() >= 600
    assert m.tasks_due.labels(kind="rollup")._value.get() == waits["rollup"]["due"] > 0
    console = Console(record=True, width=200)
    status.render(data, console)
    assert "indicators=7 (oldest waited" in console.export_text()


def test_a_write_wakes_the_symbols_export_and_gap_scan_once(conn):
    h.register(conn, "WAKE", "crypto_24x7")
    h.sync(conn, dt.datetime(2025, 3, 1, tzinfo=UTC))
    conn.execute("SELECT tickagg.sync_export_tasks('prod', '2025-03-01 00:00+00')")
    # asleep, as after a run that found nothing to do
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 day'"
        " WHERE task_kind IN ('export', 'gap_scan', 'gap_scan_history')"
    )
    ts = dt.datetime(2025, 3, 3, 10, tzinfo=UTC)
    h.insert_bars(conn, "WAKE", {ts: bar(1.0)})
    export, scan = task(conn, "WAKE", "1m", "export"), task(conn, "WAKE", "1m", "gap_scan")
    assert export["now"] < export["next_run_at"] <= export["now"] + export["run_interval"]
    assert scan["now"] < scan["next_run_at"] <= scan["now"] + scan["run_interval"]
    assert task(conn, "WAKE", "1m", "gap_scan_history")["next_run_at"] > scan["now"] + dt.timedelta(
        hours=23
    )
    # more writes before the run change nothing: one run takes them all
    h.insert_bars(conn, "WAKE", {ts + dt.timedelta(minutes=1): bar(1.0)})
    assert task(conn, "WAKE", "1m", "export")["next_run_at"] == export["next_run_at"]
    assert task(conn, "WAKE", "1m", "gap_scan")["next_run_at"] == scan["next_run_at"]


def rollup_runs(conn, symbol: str) -> dict[str, int]:
    return {
        r["timeframe"]: r["runs_total"]
        for r in conn.execute(
            "SELECT timeframe, runs_total FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND task_kind = 'rollup'",
            (symbol,),
        ).fetchall()
    }


def rollups_due_now(conn) -> set[str]:
    return {
        r["timeframe"]
        for r in conn.execute(
            "SELECT timeframe FROM tickagg.agg_get_due_tasks('prod', now(), 1000)"
            " WHERE task_kind = 'rollup'"
        ).fetchall()
    }


def test_a_live_minute_costs_a_rollup_run_only_when_it_closes_a_bucket(conn, dsn):
    """A bar-fed market, one 1m bar per symbol per minute: the minutes inside a
    bucket cost no rollup run (their write is ahead of every cursor), the minute
    that ends a bucket costs one run of each level it closes, and a late bar
    behind a cursor is due at once. The day is in the future, so no bucket can
    close by the clock: only the writes make tasks due."""
    day = conn.execute("SELECT date_trunc('day', now()) + interval '3 days' AS d").fetchone()["d"]
    h.register(conn, "LIVE", "crypto_24x7")
    h.sync(conn, day)
    h.drive(dsn)

    def minute(m: int) -> dt.datetime:
        return day + dt.timedelta(minutes=m)

    before = rollup_runs(conn, "LIVE")
    for m in range(4):  # inside the first 5m bucket
        h.insert_bars(conn, "LIVE", {minute(m): bar(1.0 + m)})
        assert h.pending_invalidations(conn) == 0
        assert rollups_due_now(conn) == set(), m
    h.insert_bars(conn, "LIVE", {minute(4): bar(5.0)})  # ends it
    assert rollups_due_now(conn) == {"5m"}
    h.drive(dsn)
    ran = rollup_runs(conn, "LIVE")
    assert {tf: ran[tf] - before[tf] for tf in ran if ran[tf] != before[tf]} == {"5m": 1}

    for m in range(5, 15):  # two more 5m buckets; the last minute also ends 15m
        h.insert_bars(conn, "LIVE", {minute(m): bar(1.0 + m)})
        h.drive(dsn)
    ran_after = rollup_runs(conn, "LIVE")
    assert {tf: ran_after[tf] - ran[tf] for tf in ran if ran_after[tf] != ran[tf]} == {
        "5m": 2,
        "15m": 1,
    }
    assert task(conn, "LIVE", "15m")["last_agg_bar_ts_utc"] == minute(15)

    # a late correction behind the cursors: due at once, and every level right
    conn.execute(
        "UPDATE tickagg.data_bars SET volume = 500 WHERE canonical_symbol = 'LIVE' AND ts_utc = %s",
        (minute(2),),
    )
    assert "5m" in rollups_due_now(conn)
    h.drive(dsn)
    for timeframe, minutes in (("5m", 5), ("15m", 15)):
        got = conn.execute(
            "SELECT d.volume, (SELECT sum(b.volume) FROM tickagg.data_bars AS b"
            "  WHERE b.canonical_symbol = 'LIVE' AND b.timeframe = '1m'"
            "  AND b.ts_utc >= %(day)s AND b.ts_utc < %(end)s) AS oracle"
            " FROM tickagg.derived_data_bars AS d WHERE d.canonical_symbol = 'LIVE'"
            " AND d.timeframe = %(tf)s AND d.ts_utc = %(day)s AND d.deleted_at IS NULL",
            {"day": day, "end": minute(minutes), "tf": timeframe},
        ).fetchone()
        assert got["volume"] == got["oracle"], timeframe
