"""agg_find_gaps, the gap ledger (gap_scan tasks through the real runner) and the
coverage view, against an independent zoneinfo oracle (tests/oracle.py)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import drive, insert_bars, register, run_cli, sync
from oracle import MINUTE, Bar1m, Calendar

UTC = dt.UTC


def bar() -> Bar1m:
    return Bar1m(1.0, 1.0, 1.0, 1.0, 1.0)


def oracle_gaps(calendar: str, present: set, start: dt.datetime, end: dt.datetime):
    """Runs of open minutes in [start, end) without a bar; closed time ends a run."""
    cal = Calendar(calendar)
    runs, cur, prev = [], None, None
    t = start
    while t < end:
        s = cal.session_of(t)
        open_ = s is not None and s.is_trading
        if open_ and t not in present:
            if cur is not None and prev == t - MINUTE:
                cur[1] = t + MINUTE
            else:
                cur = [t, t + MINUTE]
                runs.append(cur)
            prev = t
        t += MINUTE
    return [(a, b, int((b - a) / MINUTE)) for a, b in runs]


def sql_gaps(conn, symbol, start, end, timeframe="1m"):
    return [
        (r["gap_start"], r["gap_end"], r["missing_candles"])
        for r in conn.execute(
            "SELECT * FROM tickagg.agg_find_gaps(%s, %s, %s, %s)", (symbol, timeframe, start, end)
        )
    ]


def forex_minutes(start: dt.datetime, end: dt.datetime) -> set:
    cal = Calendar("forex_24x5")
    out, t = set(), start
    while t < end:
        s = cal.session_of(t)
        if s is not None and s.is_trading:
            out.add(t)
        t += MINUTE
    return out


# Two forex weeks around the US DST switch (2025-03-09), holes of every kind.
F_START = dt.datetime(2025, 3, 2, 12, 0, tzinfo=UTC)  # Sunday, before the week opens
F_END = dt.datetime(2025, 3, 15, 12, 0, tzinfo=UTC)  # Saturday


def _holes():
    d = dt.datetime
    return [
        (d(2025, 3, 3, 10, 0, tzinfo=UTC), 7),  # inside a session
        (d(2025, 3, 4, 21, 55, tzinfo=UTC), 10),  # across the 17:00 NY day boundary (EST)
        (d(2025, 3, 7, 21, 50, tzinfo=UTC), 10),  # into the Friday close: ends at 22:00 UTC
        (d(2025, 3, 9, 21, 0, tzinfo=UTC), 5),  # Sunday open after DST: 21:00 UTC
        (d(2025, 3, 12, 21, 0, tzinfo=UTC), 24 * 60),  # a whole trading day (EDT)
    ]


@pytest.fixture
def fx(conn):
    register(conn, "EURUSD", "forex_24x5")
    present = forex_minutes(F_START, F_END)
    # leading hole: the first bar only on Monday 01:00 UTC; trailing: nothing after Fri 20:00 UTC
    present = {t for t in present if dt.datetime(2025, 3, 3, 1, 0, tzinfo=UTC) <= t}
    present = {t for t in present if t < dt.datetime(2025, 3, 14, 20, 0, tzinfo=UTC)}
    for h, n in _holes():
        present -= {h + i * MINUTE for i in range(n)}
    insert_bars(conn, "EURUSD", {t: bar() for t in sorted(present)})
    return present


def test_find_gaps_matches_oracle_without_derived_bars(conn, fx):
    want = oracle_gaps("forex_24x5", fx, F_START, F_END)
    got = sql_gaps(conn, "EURUSD", F_START, F_END)
    assert got == want
    # spot checks of the semantics
    assert (
        dt.datetime(2025, 3, 2, 22, 0, tzinfo=UTC),
        dt.datetime(2025, 3, 3, 1, 0, tzinfo=UTC),
        180,
    ) in got  # before the first bar, from the Sunday 17:00 EST open
    assert (
        dt.datetime(2025, 3, 7, 21, 50, tzinfo=UTC),
        dt.datetime(2025, 3, 7, 22, 0, tzinfo=UTC),
        10,
    ) in got  # Friday close ends it; the weekend is not a gap
    assert (
        dt.datetime(2025, 3, 4, 21, 55, tzinfo=UTC),
        dt.datetime(2025, 3, 4, 22, 5, tzinfo=UTC),
        10,
    ) in got  # back-to-back sessions continue a run
    assert got[-1] == (
        dt.datetime(2025, 3, 14, 20, 0, tzinfo=UTC),
        dt.datetime(2025, 3, 14, 21, 0, tzinfo=UTC),
        60,
    )  # after the last bar, up to the Friday 17:00 EDT close
    assert not any(a.isoweekday() == 6 for a, _, _ in got)


def test_find_gaps_same_with_derived_bars_and_pending_changes(conn, fx):
    sync(conn, dt.datetime(2025, 3, 1, tzinfo=UTC))
    drive(conn.info.dsn)
    want = oracle_gaps("forex_24x5", fx, F_START, F_END)
    assert sql_gaps(conn, "EURUSD", F_START, F_END) == want
    # delete minutes behind materialised, complete bars: pending invalidations
    # must keep the fast path honest before the rollups run again
    gone = [dt.datetime(2025, 3, 11, 3, m, tzinfo=UTC) for m in (10, 11, 40)]
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'EURUSD' AND ts_utc = ANY(%s)",
        (gone,),
    )
    fx2 = fx - set(gone)
    want2 = oracle_gaps("forex_24x5", fx2, F_START, F_END)
    assert sql_gaps(conn, "EURUSD", F_START, F_END) == want2
    drive(conn.info.dsn)
    assert sql_gaps(conn, "EURUSD", F_START, F_END) == want2
    # sub-windows, unaligned bounds: a minute counts when it starts inside
    a = dt.datetime(2025, 3, 3, 10, 3, 30, tzinfo=UTC)
    b = dt.datetime(2025, 3, 3, 10, 5, 10, tzinfo=UTC)
    assert sql_gaps(conn, "EURUSD", a, b) == [
        (a.replace(minute=4, second=0), b.replace(minute=6, second=0), 2)
    ]


def test_find_gaps_equity_days_holidays_and_derived_timeframes(conn):
    register(conn, "SPY", "us_equity")
    conn.execute(
        "SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-04', NULL, 'Independence Day')"
    )
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-03', '13:00', 'early')")
    start = dt.datetime(2025, 6, 30, tzinfo=UTC)
    end = dt.datetime(2025, 7, 8, tzinfo=UTC)
    cal = Calendar("us_equity")
    present = set()
    for day in range(30, 39):
        d = dt.date(2025, 6, 30) + dt.timedelta(days=day - 30)
        s = cal.session(d)
        if not s.is_trading or d in (dt.date(2025, 7, 1), dt.date(2025, 7, 4)):
            continue  # 2025-07-01: a fully missing trading day
        close = s.close if d != dt.date(2025, 7, 3) else s.open + dt.timedelta(hours=3, minutes=30)
        t = s.open
        while t < close:
            present.add(t)
            t += MINUTE
    # pre-market prints never count
    present.add(dt.datetime(2025, 7, 2, 12, 0, tzinfo=UTC))
    insert_bars(conn, "SPY", {t: bar() for t in sorted(present)})
    got = sql_gaps(conn, "SPY", start, end)
    missing_day = (
        dt.datetime(2025, 7, 1, 13, 30, tzinfo=UTC),
        dt.datetime(2025, 7, 1, 20, 0, tzinfo=UTC),
    )
    assert got == [(*missing_day, 390)]
    # 1d bars: the missing day is a missing bucket once materialised
    sync(conn, dt.datetime(2025, 6, 30, tzinfo=UTC))
    drive(conn.info.dsn)
    assert sql_gaps(conn, "SPY", start, end, "1d") == [(*missing_day, 1)]
    assert sql_gaps(conn, "SPY", start, end, "1h") == [(*missing_day, 7)]


def test_find_gaps_errors(conn):
    import psycopg

    register(conn, "EURUSD", "forex_24x5")
    for args, state in (
        (("NOPE", "1m", F_START, F_END), "TK002"),
        (("EURUSD", "7m", F_START, F_END), "TK003"),
        (("EURUSD", "1m", F_END, F_START), "TK004"),
        (("EURUSD", "5m", F_START, F_END), "TK006"),  # no rollup task yet
        # thousands of years ran for minutes: only dates with kept sessions
        (("EURUSD", "1m", dt.datetime(1, 1, 1, tzinfo=dt.UTC), F_END), "TK004"),
        (("EURUSD", "1m", F_START, dt.datetime(9999, 1, 1, tzinfo=dt.UTC)), "TK004"),
    ):
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SELECT * FROM tickagg.agg_find_gaps(%s, %s, %s, %s)", args)
        assert ei.value.sqlstate == state


def _ledger(conn):
    return [
        (r["gap_start"], r["gap_end"], r["missing_minutes"], r["resolution"])
        for r in conn.execute(
            "SELECT * FROM tickagg.gap_ledger WHERE canonical_symbol = 'BTCUSD'"
            " ORDER BY gap_start, gap_id"
        )
    ]


def test_gap_scan_tasks_fill_the_ledger_and_mark_fills(conn, dsn):
    """Crypto trades always: the last 2 days minus holes, through the real runner."""
    register(conn, "BTCUSD", "crypto_24x7")
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    first = now - dt.timedelta(days=2)
    h1 = now - dt.timedelta(hours=30)
    h2 = now - dt.timedelta(hours=5)
    holes = {h1 + i * MINUTE for i in range(15)} | {h2 + i * MINUTE for i in range(4)}
    mins = {first + i * MINUTE for i in range(int((now - first) / MINUTE))} - holes
    insert_bars(conn, "BTCUSD", {t: bar() for t in sorted(mins)})
    res = sync(conn, first)
    assert res["gap_scan_tasks_created"] == 2
    proc = run_cli(dsn, "run", "--until-idle")
    assert proc.returncode == 0, proc.stderr
    led = _ledger(conn)
    # the two holes; the minutes still arriving (aggregation delay) are not gaps
    assert led[:2] == [(h1, h1 + 15 * MINUTE, 15, None), (h2, h2 + 4 * MINUTE, 4, None)]
    assert all(r[0] >= first for r in led)
    # fill the second hole and half the first, then scan again
    insert_bars(conn, "BTCUSD", {t: bar() for t in sorted(holes) if t >= h2 or t < h1 + 5 * MINUTE})
    res = conn.execute("SELECT tickagg.gap_scan_run('BTCUSD', 'live') AS r").fetchone()["r"]
    assert res["gaps_filled"] == 1 and res["gaps_partly_filled"] == 1 and res["gaps_new"] >= 1
    led = _ledger(conn)
    assert (h1, h1 + 15 * MINUTE, 15, "partly_filled") in led
    assert (h1 + 5 * MINUTE, h1 + 15 * MINUTE, 10, None) in led
    assert (h2, h2 + 4 * MINUTE, 4, "filled") in led
    opened = conn.execute(
        "SELECT count(*) AS n FROM tickagg.gaps_open WHERE canonical_symbol = 'BTCUSD'"
        " AND gap_start = %s",
        (h1 + 5 * MINUTE,),
    ).fetchone()["n"]
    assert opened == 1
    # a rescan with nothing new changes nothing but last_seen_at
    res = conn.execute("SELECT tickagg.gap_scan_run('BTCUSD', 'live') AS r").fetchone()["r"]
    assert res["gaps_new"] == 0 and res["gaps_filled"] == 0 and res["gaps_seen"] >= 1
    assert _ledger(conn) == led


def test_coverage_view_matches_python(conn):
    register(conn, "BTCUSD", "crypto_24x7")
    register(conn, "EURUSD", "forex_24x5")
    now = dt.datetime.now(UTC)
    end = now.replace(second=0, microsecond=0)
    mins = [end - (i + 1) * MINUTE for i in range(7 * 24 * 60)]
    kept = {t for i, t in enumerate(mins) if i % 97 != 0 and not (3000 <= i < 3100)}
    insert_bars(conn, "BTCUSD", {t: bar() for t in sorted(kept)})
    fx_open = forex_minutes(end - dt.timedelta(days=7), end)
    fx_kept = {t for t in fx_open if t.minute % 50 != 7}
    insert_bars(conn, "EURUSD", {t: bar() for t in sorted(fx_kept)})
    rows = {r["canonical_symbol"]: r for r in conn.execute("SELECT * FROM tickagg.coverage")}
    if rows["BTCUSD"]["present_7d"] != len(kept):  # a minute ticked over between now() calls
        pytest.skip("minute boundary crossed during the test")
    day = end - dt.timedelta(hours=24)
    b = rows["BTCUSD"]
    assert b["expected_7d"] == 7 * 1440 and b["expected_24h"] == 1440
    assert b["present_24h"] == sum(1 for t in kept if t >= day)
    assert float(b["coverage_7d"]) == pytest.approx(100 * len(kept) / (7 * 1440), abs=1e-3)
    assert b["coverage_24h_low"] is True  # 1/97 missing: below 99%
    assert b["coverage_7d_low"] is True
    e = rows["EURUSD"]
    assert e["expected_7d"] == len(fx_open) and e["present_7d"] == len(fx_kept)
    exp24 = sum(1 for t in fx_open if t >= day)
    assert e["expected_24h"] == (exp24 or None) or (exp24 == 0 and e["coverage_24h"] is None)
    assert e["oldest_gap_too_old"] is False


def test_gaps_command_refuses_an_unbounded_window_in_one_line(dsn, conn):
    register(conn, "EURUSD", "forex_24x5")
    conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', %s)", (F_START,))
    done = run_cli(dsn, "gaps", "--symbol", "EURUSD", "--timeframe", "5m",
                   "--from", "0001-01-01", "--to", "9999-01-01", timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "outside the dates tickagg keeps sessions for" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2
    # a window reaching into the future ends now: minutes still to come are not missing
    done = run_cli(dsn, "gaps", "--symbol", "EURUSD", "--from", "2026-01-01",
                   "--to", "2069-01-01", "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    assert rows and max(dt.datetime.fromisoformat(r["gap_end"]) for r in rows) <= now
