"""Calendar truth tables: open/closed and bucket starts at chosen instants (DST
edges, Kolkata without DST, forex week edges, a holiday and an early close),
expected candles on an early-close day, holiday import, the hierarchy check, and
bars re-derived when a holiday is entered after they were built."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import helpers as h
import psycopg
import pytest
from helpers import register, run_cli
from oracle import Bar1m, diff, expected_bars, random_bars

NY = ZoneInfo("America/New_York")
IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC
D = dt.date


def at(tz, *args):
    return dt.datetime(*args, tzinfo=tz)


def bounds(conn, calendar, timeframe, ts):
    r = conn.execute(
        "SELECT tickagg.bucket_bounds(%s, %s, %s) AS b", (calendar, timeframe, ts)
    ).fetchone()["b"]
    return None if r is None else (r.lower, r.upper)


def is_open(conn, calendar, ts) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM tickagg.calendar_sessions(%s, %s, %s + interval '1 minute')"
        " WHERE is_trading AND open_utc <= %s AND close_utc > %s) AS o",
        (calendar, ts, ts, ts, ts),
    ).fetchone()["o"]


# (calendar, instant, open?, timeframe, expected bucket start (None: no bucket))
TRUTH = [
    # forex: Friday 16:59 / 17:00 and Sunday 16:59 / 17:00 New York (seeds/003 item 9)
    ("forex_24x5", at(NY, 2025, 10, 10, 16, 59), True, "4h", at(NY, 2025, 10, 10, 13, 0)),
    ("forex_24x5", at(NY, 2025, 10, 10, 17, 0), False, "4h", None),
    ("forex_24x5", at(NY, 2025, 10, 11, 12, 0), False, "1h", None),
    ("forex_24x5", at(NY, 2025, 10, 12, 16, 59), False, "1h", None),
    ("forex_24x5", at(NY, 2025, 10, 12, 17, 0), True, "4h", at(NY, 2025, 10, 12, 17, 0)),
    ("forex_24x5", at(NY, 2025, 10, 13, 0, 0), True, "4h", at(NY, 2025, 10, 12, 21, 0)),
    ("forex_24x5", at(NY, 2025, 10, 13, 0, 0), True, "1d", at(NY, 2025, 10, 12, 17, 0)),
    # DST switches: the week opens at 22:00 UTC before and 21:00 UTC after
    ("forex_24x5", at(UTC, 2025, 3, 9, 21, 0), True, "1h", at(UTC, 2025, 3, 9, 21, 0)),
    ("forex_24x5", at(UTC, 2025, 3, 9, 20, 59), False, "1h", None),
    ("forex_24x5", at(UTC, 2025, 3, 2, 21, 59), False, "1h", None),
    ("forex_24x5", at(UTC, 2025, 3, 2, 22, 0), True, "4h", at(UTC, 2025, 3, 2, 22, 0)),
    ("forex_24x5", at(UTC, 2025, 11, 2, 22, 0), True, "4h", at(UTC, 2025, 11, 2, 22, 0)),
    ("forex_24x5", at(UTC, 2025, 11, 2, 21, 30), False, "4h", None),
    ("forex_24x5", at(UTC, 2025, 10, 26, 21, 0), True, "4h", at(UTC, 2025, 10, 26, 21, 0)),
    # us_equity across DST: 09:30 New York is 14:30 UTC in winter, 13:30 UTC in summer
    ("us_equity", at(UTC, 2025, 3, 7, 14, 30), True, "1h", at(UTC, 2025, 3, 7, 14, 30)),
    ("us_equity", at(UTC, 2025, 3, 10, 13, 30), True, "1h", at(UTC, 2025, 3, 10, 13, 30)),
    ("us_equity", at(UTC, 2025, 3, 10, 13, 29), False, "1h", None),
    ("us_equity", at(UTC, 2025, 11, 3, 14, 29), False, "5m", None),
    ("us_equity", at(UTC, 2025, 11, 3, 14, 30), True, "30m", at(UTC, 2025, 11, 3, 14, 30)),
    ("us_equity", at(NY, 2025, 11, 3, 15, 59), True, "1h", at(NY, 2025, 11, 3, 15, 30)),
    ("us_equity", at(NY, 2025, 11, 3, 16, 0), False, "1h", None),
    # holiday and 13:00 early close (rows inserted by the fixture)
    ("us_equity", at(NY, 2025, 7, 4, 10, 0), False, "1h", None),
    ("us_equity", at(NY, 2025, 7, 3, 12, 59), True, "1h", at(NY, 2025, 7, 3, 12, 30)),
    ("us_equity", at(NY, 2025, 7, 3, 13, 0), False, "1h", None),
    # Kolkata: no DST, 09:15-15:30, 1h buckets at 09:15, 10:15, ... 15:15
    ("nse_equity", at(IST, 2025, 3, 10, 9, 15), True, "1h", at(IST, 2025, 3, 10, 9, 15)),
    ("nse_equity", at(IST, 2025, 11, 3, 9, 14), False, "1h", None),
    ("nse_equity", at(IST, 2025, 11, 3, 15, 20), True, "1h", at(IST, 2025, 11, 3, 15, 15)),
    ("nse_equity", at(IST, 2025, 11, 3, 15, 30), False, "1h", None),
    ("nse_equity", at(IST, 2025, 11, 8, 11, 0), False, "1h", None),  # Saturday
    # crypto: UTC epoch alignment, every day
    ("crypto_24x7", at(UTC, 2025, 3, 9, 7, 0), True, "4h", at(UTC, 2025, 3, 9, 4, 0)),
    ("crypto_24x7", at(UTC, 2025, 11, 1, 23, 59), True, "1d", at(UTC, 2025, 11, 1, 0, 0)),
]


@pytest.fixture
def holidays(conn):
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-04', NULL, 'July 4')")
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-03', '13:00', 'early')")


@pytest.mark.parametrize(("calendar", "ts", "open_", "timeframe", "start"), TRUTH)
def test_truth_table(conn, holidays, calendar, ts, open_, timeframe, start):
    assert is_open(conn, calendar, ts) is open_
    b = bounds(conn, calendar, timeframe, ts)
    if start is None:
        # closed: no bucket, or (a non-trading date's session) one expecting nothing
        if b is not None:
            exp = conn.execute(
                "SELECT expected_candles FROM tickagg.calendar_buckets(%s, %s, %s, %s)"
                " WHERE bucket_start = %s",
                (calendar, timeframe, b[0], b[1], b[0]),
            ).fetchone()["expected_candles"]
            assert exp == 0
    else:
        assert b is not None and b[0] == start and b[0] <= ts < b[1]


def test_early_close_expected_candles(conn, holidays):
    rows = conn.execute(
        "SELECT bucket_start, bucket_end, expected_candles FROM tickagg.calendar_buckets("
        "'us_equity', '1d', '2025-07-02 12:00+00', '2025-07-08 00:00+00')"
    ).fetchall()
    by_day = {r["bucket_start"].astimezone(NY).date(): r for r in rows}
    assert by_day[dt.date(2025, 7, 2)]["expected_candles"] == 390
    assert by_day[dt.date(2025, 7, 3)]["expected_candles"] == 210  # 09:30-13:00
    assert by_day[dt.date(2025, 7, 3)]["bucket_end"] == at(NY, 2025, 7, 3, 13, 0)
    assert by_day.get(dt.date(2025, 7, 4), {"expected_candles": 0})["expected_candles"] == 0
    last_1h = conn.execute(
        "SELECT tickagg.bucket_bounds('us_equity', '1h', %s) AS b", (at(NY, 2025, 7, 3, 12, 45),)
    ).fetchone()["b"]
    assert (last_1h.lower, last_1h.upper) == (at(NY, 2025, 7, 3, 12, 30), at(NY, 2025, 7, 3, 13, 0))


def test_set_holiday_validates(conn):
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT tickagg.calendar_set_holiday('nope', '2025-01-01')")
    assert ei.value.sqlstate == "TK003"
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-03', '17:00')")
    assert ei.value.sqlstate == "TK004" and ei.value.diag.message_hint


def test_hierarchy_that_does_not_nest_is_refused(conn):
    register(conn, "EURUSD", "forex_24x5")
    conn.execute(
        "INSERT INTO tickagg.timeframes"
        " (timeframe, bucket_kind, step, source_timeframe, sort_order)"
        " VALUES ('7m', 'fixed', '7 minutes', '5m', 99)"
    )
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT tickagg.sync_agg_state_from_registry('prod', '2025-07-01')")
    assert ei.value.sqlstate == "TK005"
    assert "7m" in ei.value.diag.message_primary and ei.value.diag.message_hint


def test_calendars_import_and_list(dsn, conn):
    proc = run_cli(
        dsn, "calendars", "import", "--calendar", "us_equity", "--calendar", "nse_equity",
        "--from-year", "2025", "--to-year", "2026",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {
        (r["calendar_code"], r["holiday_date"]): r["early_close"]
        for r in conn.execute("SELECT * FROM tickagg.calendar_holidays")
    }
    assert rows[("us_equity", dt.date(2025, 7, 4))] is None
    assert rows[("us_equity", dt.date(2025, 12, 25))] is None
    assert rows[("us_equity", dt.date(2025, 11, 28))] == dt.time(13, 0)
    assert rows[("nse_equity", dt.date(2025, 8, 15))] is None  # Independence Day
    assert not any(d.isoweekday() > 5 for _, d in rows)
    again = run_cli(
        dsn, "calendars", "import", "--calendar", "us_equity", "--from-year", "2025",
        "--to-year", "2026",
    )  # fmt: skip
    assert "(0 rows added or changed)" in again.stdout
    listing = run_cli(dsn, "calendars", "--year", "2025", "--calendar", "us_equity")
    assert listing.returncode == 0 and "early_close" in listing.stdout and "13:00" in listing.stdout
    # closed on the imported holiday
    assert not is_open(conn, "us_equity", at(NY, 2025, 12, 25, 11, 0))


def test_gaps_cli_formats(dsn, conn):
    register(conn, "EURUSD", "forex_24x5")
    args = ("--symbol", "EURUSD", "--from", "2025-03-07T21:00:00Z", "--to", "2025-03-09T23:00:00Z")
    table = run_cli(dsn, "gaps", *args)
    assert table.returncode == 0, table.stderr
    assert "2025-03-07 21:00" in table.stdout and "2 gaps, 180 missing minutes" in table.stdout
    csv = run_cli(dsn, "gaps", *args, "--format", "csv").stdout.splitlines()
    assert csv == [
        "gap_start,gap_end,missing_candles",
        "2025-03-07T21:00:00+00:00,2025-03-07T22:00:00+00:00,60",
        "2025-03-09T21:00:00+00:00,2025-03-09T23:00:00+00:00,120",
    ]


def test_a_holiday_set_after_the_fact_re_derives_built_bars(dsn, conn):
    """Bars built while 2025-07-04 was a normal day and 07-03 closed at 16:00 are
    re-derived when the holiday and the early close are entered later: they then
    equal the oracle that knows both; symbols of other calendars are not touched."""
    rng = random.Random(704)
    agg_start = dt.datetime(2025, 6, 30, tzinfo=UTC)
    data = {
        "SPY": ("us_equity", random_bars("us_equity", D(2025, 6, 30), D(2025, 7, 11), rng)),
        "FXA": ("forex_24x5", random_bars("forex_24x5", D(2025, 6, 30), D(2025, 7, 11), rng)),
    }
    # a feed that trades through the (not yet entered) holiday and early close
    for day in (D(2025, 7, 3), D(2025, 7, 4)):
        for minute in range(0, 390, 7):
            ts = dt.datetime.combine(day, dt.time(9, 30), NY).astimezone(UTC) + dt.timedelta(
                minutes=minute
            )
            data["SPY"][1][ts] = Bar1m(500.0, 501.0, 499.0, 500.5, 10.0)
    for sym, (cal, bars) in data.items():
        h.register(conn, sym, cal)
        h.sync(conn, agg_start)
        h.insert_bars(conn, sym, bars)
    h.rollups_only(conn)
    h.drive(dsn)

    def matches(holidays):
        exp = {}
        for sym, (cal, bars) in data.items():
            exp.update(
                expected_bars(
                    sym, cal, bars, agg_start, holidays=holidays if sym == "SPY" else None
                )
            )
        problems = diff(exp, h.derived(conn, data))
        assert not problems, "\n".join(problems)

    matches({})
    fx_before = {k: v for k, v in h.derived(conn, ["FXA"], with_meta=True).items()}

    res = conn.execute(
        "SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-04', NULL, 'July 4') AS r"
    ).fetchone()["r"]
    assert res["changed"] and res["tasks_dirtied"] == 7
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-03', '13:00', 'early')")
    h.drive(dsn)
    matches({D(2025, 7, 4): None, D(2025, 7, 3): dt.time(13, 0)})
    assert h.derived(conn, ["FXA"], with_meta=True) == fx_before

    # entering the same holiday again changes nothing and dirties nothing
    res = conn.execute(
        "SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-04', NULL, 'July 4') AS r"
    ).fetchone()["r"]
    assert (res["changed"], res["tasks_dirtied"]) == (False, 0)


def test_a_holiday_removed_by_a_direct_write_re_derives_built_bars(dsn, conn):
    """A holiday deleted straight from market_holidays (not through
    calendar_set_holiday) changes the day's session all the same: the bars built
    around it follow by themselves."""
    rng = random.Random(705)
    agg_start = dt.datetime(2025, 6, 30, tzinfo=UTC)
    bars = random_bars("us_equity", D(2025, 6, 30), D(2025, 7, 11), rng)
    for minute in range(0, 390, 5):  # a feed that traded on July 4th
        at = dt.datetime.combine(D(2025, 7, 4), dt.time(9, 30), NY).astimezone(UTC)
        bars[at + dt.timedelta(minutes=minute)] = Bar1m(500.0, 501.0, 499.0, 500.5, 10.0)
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2025-07-04', NULL, 'July 4')")
    h.register(conn, "SPZ", "us_equity")
    h.sync(conn, agg_start)
    h.insert_bars(conn, "SPZ", bars)
    h.rollups_only(conn)
    h.drive(dsn)
    with_holiday = expected_bars(
        "SPZ", "us_equity", bars, agg_start, holidays={D(2025, 7, 4): None}
    )
    assert not diff(with_holiday, h.derived(conn, ["SPZ"]))
    conn.execute(
        "DELETE FROM tickagg.market_holidays WHERE calendar_code = 'us_equity'"
        " AND holiday_date = '2025-07-04'"
    )
    h.drive(dsn)
    problems = diff(expected_bars("SPZ", "us_equity", bars, agg_start), h.derived(conn, ["SPZ"]))
    assert not problems, "\n".join(problems)


def test_a_symbol_moved_to_another_calendar_re_derives_its_bars(dsn, conn):
    """A crypto symbol re-registered on forex_24x5 kept its 1d bars at 00:00 UTC,
    its weekend buckets and 1440 expected candles. After the move every bar
    follows the new calendar, the old buckets are gone, and no open gap lies in
    what is now closed time."""
    rng = random.Random(406)
    agg_start = dt.datetime(2025, 3, 3, tzinfo=UTC)
    bars = random_bars("crypto_24x7", D(2025, 3, 3), D(2025, 3, 16), rng, hole_rate=0.002)
    h.register(conn, "HB04", "crypto_24x7")
    h.sync(conn, agg_start)
    h.insert_bars(conn, "HB04", bars)
    h.drive(dsn)
    assert not diff(
        expected_bars("HB04", "crypto_24x7", bars, agg_start), h.derived(conn, ["HB04"])
    )

    done = run_cli(dsn, "symbols", "add", "HB04", "--calendar", "forex_24x5")
    assert done.returncode == 0, done.stderr
    h.sync(conn, agg_start)
    h.drive(dsn)
    problems = diff(expected_bars("HB04", "forex_24x5", bars, agg_start), h.derived(conn, ["HB04"]))
    assert not problems, "\n".join(problems)
    weekend_gaps = conn.execute(
        "SELECT count(*) AS n FROM tickagg.gap_ledger WHERE canonical_symbol = 'HB04'"
        " AND filled_at IS NULL AND extract(isodow FROM gap_start AT TIME ZONE 'UTC') = 6"
    ).fetchone()["n"]
    assert weekend_gaps == 0


SESSIONS_DIFFER = """
SELECT count(*) AS n FROM (
    (SELECT * FROM tickagg.calendar_sessions(%(c)s, %(f)s, %(t)s)
     EXCEPT ALL SELECT * FROM tickagg.calendar_days_compute(%(c)s, %(f)s, %(t)s))
    UNION ALL
    (SELECT * FROM tickagg.calendar_days_compute(%(c)s, %(f)s, %(t)s)
     EXCEPT ALL SELECT * FROM tickagg.calendar_sessions(%(c)s, %(f)s, %(t)s))
) AS d
"""


def sessions_differ(conn, calendar, start, end) -> int:
    return conn.execute(SESSIONS_DIFFER, {"c": calendar, "f": start, "t": end}).fetchone()["n"]


def test_stored_sessions_equal_computed_ones(conn, holidays):
    """calendar_sessions reads calendar_days inside its window and computes outside:
    for every calendar, the stored rows equal the computed ones, and any range (a
    minute, days, across DST, straddling the window's edges, outside it) gives the
    sessions calendar_days_compute gives."""
    calendars = [
        r["calendar_code"] for r in conn.execute("SELECT calendar_code FROM tickagg.calendars")
    ]
    for cal in calendars:
        stored = conn.execute(
            "SELECT count(*) AS n FROM tickagg.calendar_days WHERE calendar_code = %s", (cal,)
        ).fetchone()["n"]
        assert stored == (D(2070, 1, 1) - D(1990, 1, 1)).days
        # a migrate recomputes them all and finds nothing to write
        assert (
            conn.execute("SELECT tickagg.calendar_days_refresh(%s) AS n", (cal,)).fetchone()["n"]
            == 0
        )
    rng = random.Random(1990)
    edges = [at(UTC, 1990, 1, 1), at(UTC, 1990, 1, 8), at(UTC, 2069, 12, 25), at(UTC, 2070, 1, 1)]
    for _ in range(300):
        cal = rng.choice(calendars)
        if rng.random() < 0.3:
            start = rng.choice(edges) + dt.timedelta(hours=rng.randint(-240, 240))
        else:
            start = at(UTC, 1985, 1, 1) + dt.timedelta(minutes=rng.randint(0, 90 * 525_600))
        end = start + rng.choice(
            [dt.timedelta(microseconds=1), dt.timedelta(minutes=1), dt.timedelta(hours=7),
             dt.timedelta(days=8), dt.timedelta(days=rng.randint(1, 400))]
        )  # fmt: skip
        assert sessions_differ(conn, cal, start, end) == 0, (cal, start, end)


def test_stored_sessions_follow_holiday_and_calendar_changes(conn):
    def session(cal, day):
        return conn.execute(
            "SELECT is_trading, close_utc FROM tickagg.calendar_days"
            " WHERE calendar_code = %s AND trading_date = %s",
            (cal, day),
        ).fetchone()

    normal_close = at(NY, 2031, 7, 3, 16, 0)
    assert session("us_equity", D(2031, 7, 3)) == {"is_trading": True, "close_utc": normal_close}
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2031-07-03', '13:00')")
    assert session("us_equity", D(2031, 7, 3))["close_utc"] == at(NY, 2031, 7, 3, 13, 0)
    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2031-07-03', NULL)")
    assert session("us_equity", D(2031, 7, 3))["is_trading"] is False
    # an owner editing the table directly: moving the holiday, then removing it
    conn.execute(
        "UPDATE tickagg.market_holidays SET holiday_date = '2031-07-04'"
        " WHERE calendar_code = 'us_equity' AND holiday_date = '2031-07-03'"
    )
    assert session("us_equity", D(2031, 7, 3)) == {"is_trading": True, "close_utc": normal_close}
    assert session("us_equity", D(2031, 7, 4))["is_trading"] is False
    conn.execute("DELETE FROM tickagg.market_holidays WHERE calendar_code = 'us_equity'")
    assert session("us_equity", D(2031, 7, 4))["is_trading"] is True

    # a new calendar gets its sessions, a changed one new times, a removed one none
    conn.execute(
        "INSERT INTO tickagg.market_calendars (calendar_code, description, time_zone,"
        " session_open_offset, session_close_offset, trading_isodows)"
        " VALUES ('lse_equity', 'London', 'Europe/London', '08:00', '16:30', '{1,2,3,4,5}')"
    )
    assert session("lse_equity", D(2031, 3, 31))["close_utc"] == at(UTC, 2031, 3, 31, 15, 30)
    conn.execute(
        "UPDATE tickagg.market_calendars SET session_close_offset = '16:35'"
        " WHERE calendar_code = 'lse_equity'"
    )
    assert session("lse_equity", D(2031, 3, 31))["close_utc"] == at(UTC, 2031, 3, 31, 15, 35)
    assert sessions_differ(conn, "lse_equity", at(UTC, 2031, 1, 1), at(UTC, 2032, 1, 1)) == 0
    conn.execute(
        "UPDATE tickagg.market_calendars SET calendar_code = 'lse_main'"
        " WHERE calendar_code = 'lse_equity'"
    )
    assert session("lse_equity", D(2031, 3, 31)) is None
    assert session("lse_main", D(2031, 3, 31))["close_utc"] == at(UTC, 2031, 3, 31, 15, 35)
    conn.execute("DELETE FROM tickagg.market_calendars WHERE calendar_code = 'lse_main'")
    assert session("lse_main", D(2031, 3, 31)) is None

    conn.execute("SELECT tickagg.calendar_set_holiday('us_equity', '2031-07-03', NULL)")
    conn.execute("TRUNCATE tickagg.market_holidays")
    assert session("us_equity", D(2031, 7, 3)) == {"is_trading": True, "close_utc": normal_close}


def test_a_session_far_from_its_date_is_refused(conn):
    # sessions are looked up within two days of their date (calendar_sessions)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(
            "UPDATE tickagg.market_calendars SET session_open_offset = '-30 hours'"
            " WHERE calendar_code = 'forex_24x5'"
        )
    assert ei.value.sqlstate == "23514"


def test_sessions_of_calendars_far_from_utc(conn):
    """The stored sessions are found by bounds that follow from the calendar data
    (a session lasts at most a day, a CHECK), not from an assumption about how far
    a time zone is from UTC (within 14 hours; issue 18 item 4): calendars at the
    farthest zones, with sessions at the CHECKs' extremes, store every trading
    date and give exactly the computed sessions."""
    zones = {
        "far_kiritimati": "Pacific/Kiritimati",  # UTC+14
        "far_gmt_minus_12": "Etc/GMT+12",  # UTC-12
        "far_apia": "Pacific/Apia",  # UTC+13, and skipped 2011-12-30 moving across the date line
        "far_niue": "Pacific/Niue",  # UTC-11
    }
    for i, (code, zone) in enumerate(zones.items()):
        conn.execute(
            "INSERT INTO tickagg.market_calendars (calendar_code, description, time_zone,"
            " session_open_offset, session_close_offset, trading_isodows)"
            " VALUES (%s, 'far from UTC', %s, %s, %s, '{1,2,3,4,5}')",
            (code, zone, *(("-1 day", "00:00"), ("1 day", "2 days"))[i % 2]),
        )
        stored = conn.execute(
            "SELECT count(*) AS n FROM tickagg.calendar_days WHERE calendar_code = %s", (code,)
        ).fetchone()["n"]
        assert stored == (D(2070, 1, 1) - D(1990, 1, 1)).days, zone
    rng = random.Random(14)
    for _ in range(200):
        code = rng.choice(list(zones))
        start = at(UTC, 1985, 1, 1) + dt.timedelta(minutes=rng.randint(0, 90 * 525_600))
        end = start + rng.choice(
            [dt.timedelta(minutes=1), dt.timedelta(hours=7), dt.timedelta(days=rng.randint(1, 9))]
        )
        assert sessions_differ(conn, code, start, end) == 0, (code, start, end)
