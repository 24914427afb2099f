"""A closed market costs no rollup runs (issue 24).

Every level cuts its buckets from the windows of a calendar's sessions, trading
or not (a forex Saturday, a US Sunday or holiday: buckets that expect no
candles). Minutes outside all of them, a US stock's after-hours and overnight
bars, belong to no bucket: written behind the rollup cursors they record no dirty
span and make nothing due, at any level. A write with a minute in a bucket
records exactly the spans it always did, and the late data is re-materialised to
equal the oracle.
"""

from __future__ import annotations

import datetime as dt
import random

import helpers as h
import pytest
from oracle import Bar1m, Calendar, diff, expected_bars, random_bars

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)


def utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


def bar(volume: float, price: float = 100.0) -> Bar1m:
    return Bar1m(price, price + 1, price - 1, price + 0.5, volume)


def rollup_runs(conn, symbol: str) -> dict[str, int]:
    return {
        r["timeframe"]: r["runs_total"]
        for r in conn.execute(
            "SELECT timeframe, runs_total FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND task_kind = 'rollup'",
            (symbol,),
        )
    }


def rollups_due_now(conn) -> set[tuple[str, str]]:
    return {
        (r["canonical_symbol"], r["timeframe"])
        for r in conn.execute(
            "SELECT canonical_symbol, timeframe FROM tickagg.agg_get_due_tasks('prod', now(), 1000)"
            " WHERE task_kind = 'rollup'"
        )
    }


def recorded_spans(conn, symbol: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """The dirty spans pending for the symbol's tasks (only 5m is built from 1m)."""
    return sorted(
        (r["dirty_range"].lower, r["dirty_range"].upper)
        for r in conn.execute(
            "SELECT timeframe, dirty_range FROM tickagg.agg_invalidations"
            " WHERE canonical_symbol = %s",
            (symbol,),
        )
        if r["timeframe"] == "5m"
    )


def written_spans(minutes) -> list[tuple[dt.datetime, dt.datetime]]:
    """The spans a statement writing these minutes covers, as the trigger cuts them:
    the hull when the minutes fill at least half of it, else each run of minutes."""
    ts = sorted(minutes)
    first, last_end = ts[0], ts[-1] + MINUTE
    if len(ts) * MINUTE * 2 >= last_end - first:
        return [(first, last_end)]
    spans: list[list[dt.datetime]] = []
    for t in ts:
        if spans and spans[-1][1] == t:
            spans[-1][1] = t + MINUTE
        else:
            spans.append([t, t + MINUTE])
    return [(a, b) for a, b in spans]


def in_a_session(cal: Calendar, span: tuple[dt.datetime, dt.datetime]) -> bool:
    """Whether the span overlaps a session window of the calendar, trading or not."""
    lo, hi = span
    days = cal.sessions_between(lo.date() - dt.timedelta(days=2), hi.date() + dt.timedelta(days=2))
    return any(s.open < hi and s.close > lo for s in days)


def compare_with_oracle(conn, symbol, calendar, bars, agg_start, holidays=None) -> int:
    """Every materialised bar (buckets before each level's cursor) equals the oracle's."""
    cur = {
        tf: c for (s, tf, kind), c in h.cursors(conn).items() if s == symbol and kind == "rollup"
    }
    exp = {
        k: v
        for k, v in expected_bars(symbol, calendar, bars, agg_start, holidays=holidays).items()
        if k[2] < cur[k[1]]
    }
    act = {k: v for k, v in h.derived(conn, [symbol]).items() if k[2] < cur[k[1]]}
    problems = diff(exp, act)
    assert not problems, "\n".join(problems[:10])
    return len(exp)


def test_after_hours_bars_cost_no_rollup_run(conn, dsn):
    """A US stock's after-hours, pre-open, overnight and after-early-close bars
    written behind the cursors: no dirty span, nothing due, no run at any level.
    Bars inside a session, across the DST change, on a Sunday's or a holiday's
    session (buckets that expect nothing) still record their span and are
    re-materialised; every bar equals the oracle."""
    holidays = {dt.date(2025, 11, 27): None, dt.date(2025, 11, 28): dt.time(13, 0)}
    for day, early in holidays.items():
        conn.execute(
            "SELECT tickagg.calendar_set_holiday('us_equity', %s, %s, 'test')", (day, early)
        )
    cal = Calendar("us_equity", holidays)
    agg_start = utc("2025-10-27 00:00")
    h.register(conn, "AFTERH", "us_equity")
    h.sync(conn, agg_start)
    h.rollups_only(conn)

    # every trading minute of five weeks but two, which come late
    holes = {utc("2025-10-30 15:00"), utc("2025-11-03 20:30")}
    bars: dict[dt.datetime, Bar1m] = {}
    for s in cal.sessions_between(agg_start.date(), dt.date(2025, 11, 28)):
        t = s.open
        while s.is_trading and t < s.close:
            if t not in holes:
                bars[t] = bar(1.0 + len(bars) % 7)
            t += MINUTE
    h.insert_bars(conn, "AFTERH", bars)
    h.drive(dsn)
    assert h.cursors(conn)[("AFTERH", "5m", "rollup")] > utc("2025-11-29 00:00")
    runs = rollup_runs(conn, "AFTERH")

    closed = [
        [utc("2025-10-31 20:30")],  # Friday 16:30 EDT: after hours
        [utc("2025-11-03 14:00")],  # Monday 09:00 EST: before the open (in session in EDT)
        [utc("2025-11-02 02:00")],  # Saturday night 22:00 EDT
        [utc("2025-11-28 18:30")],  # 13:30 EST after the 13:00 early close
        [utc("2025-11-03 21:00") + m * MINUTE for m in range(60)],  # an hour: the hull
        [utc("2025-11-04 23:59"), utc("2025-11-05 03:00"), utc("2025-11-06 12:00")],  # scattered
    ]
    for minutes in closed:
        assert all(cal.session_of(t) is None for t in minutes)
        h.insert_bars(conn, "AFTERH", {t: bar(3.0) for t in minutes})
        bars.update({t: bar(3.0) for t in minutes})
        assert recorded_spans(conn, "AFTERH") == [], minutes
        assert rollups_due_now(conn) == set(), minutes
    h.drive(dsn)
    assert rollup_runs(conn, "AFTERH") == runs

    in_buckets = [
        utc("2025-10-30 15:00"),  # a hole in Thursday's session (EDT)
        utc("2025-11-03 20:30"),  # Monday 15:30 EST: in session after the DST change
        utc("2025-11-02 16:00"),  # Sunday 11:00 EST: the session window of a closed day
        utc("2025-11-27 15:00"),  # Thanksgiving, a holiday: its window still has buckets
    ]
    for n, t in enumerate(in_buckets, start=1):
        assert cal.session_of(t) is not None
        h.insert_bars(conn, "AFTERH", {t: bar(50.0)})
        bars[t] = bar(50.0)
        assert recorded_spans(conn, "AFTERH") == sorted((x, x + MINUTE) for x in in_buckets[:n])
        assert ("AFTERH", "5m") in rollups_due_now(conn), t
    # a correction of the last minute before the early close, mixed in one
    # statement with after-hours minutes of that day: only its own span is recorded
    last = utc("2025-11-28 17:59")
    conn.execute(
        "UPDATE tickagg.data_bars SET volume = 900 WHERE canonical_symbol = 'AFTERH'"
        " AND ts_utc IN (%s, %s)",
        (last, utc("2025-11-28 18:30")),
    )
    bars[last] = bar(900.0)
    bars[utc("2025-11-28 18:30")] = bar(900.0)
    assert recorded_spans(conn, "AFTERH") == sorted((x, x + MINUTE) for x in [*in_buckets, last])
    h.drive(dsn)
    after = rollup_runs(conn, "AFTERH")
    assert after["5m"] > runs["5m"]

    assert compare_with_oracle(conn, "AFTERH", "us_equity", bars, agg_start, holidays) > 1000
    empty_windows = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars WHERE canonical_symbol = 'AFTERH'"
        " AND timeframe = '1d' AND expected_candles = 0 AND deleted_at IS NULL"
    ).fetchone()["n"]
    assert empty_windows == 2  # the Sunday and the holiday


SYMBOLS = (
    ("EQC", "us_equity", 250.0),
    ("FXC", "forex_24x5", 1.0859375),
    ("CRC", "crypto_24x7", 3000.0),
)
FIRST_DAY, LAST_DAY = dt.date(2025, 10, 27), dt.date(2025, 11, 7)  # US DST ends 2025-11-02
AGG_START = utc("2025-10-27 00:00")


@pytest.mark.parametrize("seed", [24, 20251102])
def test_late_and_closed_market_writes_match_the_oracle(conn, dsn, seed):
    """Randomized: each calendar's history over the DST change, partly loaded and
    built; then writes behind the cursors, one statement each: closed-market
    minutes (US after hours, nights, weekend nights), new minutes in buckets
    (trading sessions, a forex Saturday, a US Sunday's window), corrections,
    mixes of both, and appends. Each write records exactly the spans that
    overlap a session window (none for closed minutes, whose symbol then runs no
    rollup at any level); after every write and run every level equals the
    oracle."""
    print(f"closed-market seed={seed}")
    rng = random.Random(seed)
    universes, models, cals = {}, {}, {}
    for sym, code, base in SYMBOLS:
        universes[sym] = random_bars(code, FIRST_DAY, LAST_DAY, rng, base=base, hole_rate=0.01)
        cals[sym] = Calendar(code)
        h.register(conn, sym, code)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    # The history is in the past: buckets close at the newest minute, so the
    # cursors stop inside it and what comes after them is not late.
    conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years'")
    for sym, universe in universes.items():
        order = sorted(universe)
        first = {t: universe[t] for t in order[: len(order) * 6 // 10]}
        h.insert_bars(conn, sym, first)
        models[sym] = dict(first)
    h.drive(dsn)

    def cursor(sym: str) -> dt.datetime:
        return h.cursors(conn)[(sym, "5m", "rollup")]

    def minutes_behind(sym: str, *, bucketed: bool) -> list[dt.datetime]:
        """Minutes behind the 5m cursor, not written yet, in a bucket or in none."""
        out = []
        t, end = AGG_START, cursor(sym)
        while t < end:
            if t not in models[sym] and (cals[sym].session_of(t) is not None) == bucketed:
                out.append(t)
            t += MINUTE
        return out

    kinds = ("closed", "bucketed", "closed+bucketed", "correct", "append", "weekend")
    closed_writes = 0
    done = set()
    for step in range(36):
        sym = rng.choice([s for s, _, _ in SYMBOLS])
        kind = rng.choice(kinds)
        if kind.startswith("closed") and sym != "EQC":
            sym = "EQC"  # the other calendars have no closed minutes
        cal = cals[sym]
        note = f"step {step}: {kind} {sym}"
        around = models[sym][max(models[sym])].close
        runs = rollup_runs(conn, sym)
        if kind == "append":
            ahead = sorted(t for t in universes[sym] if t not in models[sym])[: rng.randint(1, 900)]
            if not ahead:
                continue
            write = {t: universes[sym][t] for t in ahead}
            h.insert_bars(conn, sym, write)
            models[sym].update(write)
            h.drive(dsn)
            done.add(kind)
            continue
        if kind == "correct":
            picks = rng.sample([t for t in models[sym] if t < cursor(sym)], rng.choice((1, 3, 20)))
            volume = float(rng.randint(1, 999))
            conn.execute(
                "UPDATE tickagg.data_bars SET volume = %s"
                " WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (volume, sym, picks),
            )
            for t in picks:
                old = models[sym][t]
                models[sym][t] = Bar1m(
                    old.open, old.high, old.low, old.close, volume, old.vwap, old.trade_count,
                    old.source,
                )  # fmt: skip
        else:
            picks: list[dt.datetime] = []
            if "closed" in kind:
                closed = minutes_behind(sym, bucketed=False)
                start = rng.choice(closed)
                picks += rng.choice(
                    ([start], rng.sample(closed, 4), [t for t in closed if start <= t][:90])
                )
            if "bucketed" in kind:
                picks += rng.sample(minutes_behind(sym, bucketed=True), rng.choice((1, 2, 7)))
            if kind == "weekend":
                # minutes of a non-trading date's window: buckets that expect nothing
                weekend = [
                    t
                    for t in minutes_behind(sym, bucketed=True)
                    if not cal.session_of(t).is_trading
                ]
                if not weekend:
                    continue
                start = rng.choice(weekend)
                picks = [t for t in weekend if start <= t][: rng.choice((1, 15))]
            picks = sorted(set(picks))
            write = {t: Bar1m(around, around + 1, around - 1, around, 7.0) for t in picks}
            h.insert_bars(conn, sym, write)
            models[sym].update(write)
        done.add(kind)
        expected = [s for s in written_spans(picks) if in_a_session(cal, s)]
        assert recorded_spans(conn, sym) == expected, note
        h.drive(dsn)
        if not expected:
            closed_writes += 1
            assert rollup_runs(conn, sym) == runs, note
        else:
            assert rollup_runs(conn, sym)["5m"] > runs["5m"], note
        compare_with_oracle(conn, sym, cal.code, models[sym], AGG_START)

    for sym, _, _ in SYMBOLS:
        rest = {t: b for t, b in universes[sym].items() if t not in models[sym]}
        if rest:
            h.insert_bars(conn, sym, rest)
            models[sym].update(rest)
    h.drive(dsn)
    for sym, code, _ in SYMBOLS:
        assert compare_with_oracle(conn, sym, code, models[sym], AGG_START) > 100, sym
    assert closed_writes > 0
    assert done == set(kinds)
