"""Ticks -> 1-minute bars (issue 5): random tick streams against the Python
tick oracle, the cascade against tests/oracle.py, late ticks, catch-up after a
stopped runner, duplicates and the SQL ingest path's rejects."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random

import helpers as h
import pytest
from oracle import diff, expected_bars
from tick_oracle import Tick, expected_1m, random_ticks, shuffled_arrival

UTC = dt.UTC
SYMBOLS = {"TBTC": ("crypto_24x7", "last", 50_000.0), "TEUR": ("crypto_24x7", "mid", 1.08)}


def register_ticks(conn, symbol: str, calendar: str, price_kind: str) -> None:
    conn.execute(
        "SELECT tickagg.register_symbol(%s, %s, p_source_kind => 'ticks', p_price_kind => %s)",
        (symbol, calendar, price_kind),
    )


def ingest(conn, ticks: list[Tick]) -> dict:
    """The SQL path producers use: one ingest_ticks call, arrays in arrival order."""
    return conn.execute(
        "SELECT tickagg.ingest_ticks(%s, %s, %s, %s, %s, %s) AS r",
        (
            [t.symbol for t in ticks],
            [t.ts for t in ticks],
            [t.bid for t in ticks],
            [t.ask for t in ticks],
            [t.last for t in ticks],
            [t.size for t in ticks],
        ),
    ).fetchone()["r"]


DELIVERIES = itertools.count(1)


def delivered(ticks: list[Tick]) -> list[Tick]:
    """The ticks as one delivery (one ingest call) brings them, for the oracle."""
    delivery = next(DELIVERIES)
    return [dataclasses.replace(t, delivery=delivery) for t in ticks]


def ingest_in_batches(conn, rng: random.Random, ticks: list[Tick]) -> list[Tick]:
    """Ingest in calls of random size; the ticks as delivered."""
    out: list[Tick] = []
    i = 0
    while i < len(ticks):
        n = rng.randint(1, 400)
        res = ingest(conn, ticks[i : i + n])
        assert res["rows_rejected"] == 0, res
        out += delivered(ticks[i : i + n])
        i += n
    return out


def bars_1m(conn) -> dict:
    return {
        (r["canonical_symbol"], r["ts_utc"].astimezone(UTC)): r
        for r in conn.execute("SELECT * FROM tickagg.data_bars")
    }


def assert_1m_matches(conn, arrivals: list[Tick]) -> dict:
    price_kind = {s: v[1] for s, v in SYMBOLS.items()}
    exp = expected_1m(arrivals, price_kind)
    act = bars_1m(conn)
    assert set(act) == set(exp), (
        f"missing {sorted(set(exp) - set(act))[:5]} unexpected {sorted(set(act) - set(exp))[:5]}"
    )
    for k, (bar, kind) in exp.items():
        a = act[k]
        got = (a["open"], a["high"], a["low"], a["close"], a["volume"], a["trade_count"])
        want = (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count)
        assert got == want, f"{k}: got {got} want {want}"
        assert a["vwap"] == pytest.approx(bar.vwap, rel=1e-12), k
        assert a["volume_kind"] == kind, k
    return exp


def assert_derived_match(conn, exp_1m: dict, agg_start: dt.datetime) -> None:
    """Every closed derived bucket equals tests/oracle.py over the 1m bars."""
    frontier = {
        r["canonical_symbol"]: r["last_agg_bar_ts_utc"]
        for r in conn.execute(
            "SELECT canonical_symbol, last_agg_bar_ts_utc FROM tickagg.data_agg_state"
            " WHERE task_kind = 'ticks_1m'"
        )
    }
    exp = {}
    for sym, (cal, _, _) in SYMBOLS.items():
        bars = {ts: b for (s, ts), (b, _) in exp_1m.items() if s == sym}
        for k, v in expected_bars(sym, cal, bars, agg_start).items():
            if v["bucket_end"] <= frontier[sym]:
                exp[k] = v
    problems = diff(exp, h.derived(conn, SYMBOLS))
    assert not problems, "\n".join(problems)


def setup(conn, minutes: int = 300, seed: int = 7):
    rng = random.Random(seed)
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    agg_start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=7)
    for sym, (cal, kind, _) in SYMBOLS.items():
        register_ticks(conn, sym, cal, kind)
    h.sync(conn, agg_start)
    streams = []
    for sym, (_, kind, base) in SYMBOLS.items():
        streams += random_ticks(rng, sym, kind, agg_start, minutes, base)
    return rng, agg_start, streams


@pytest.mark.parametrize("seed", [7, 31])
def test_random_streams_match_oracle(dsn, conn, seed):
    print(f"ticks seed={seed}")
    rng, agg_start, streams = setup(conn, seed=seed)
    arrivals = shuffled_arrival(rng, sorted(streams, key=lambda t: t.ts))
    arrivals = ingest_in_batches(conn, rng, arrivals)
    h.drive(dsn, max_windows=rng.choice((None, 37)))
    exp = assert_1m_matches(conn, arrivals)
    assert_derived_match(conn, exp, agg_start)
    sources = {r["source"] for r in conn.execute("SELECT DISTINCT source FROM tickagg.data_bars")}
    assert sources == {"live_aggregated"}


def test_late_ticks_gap_fill_and_cascade(dsn, conn):
    rng, agg_start, streams = setup(conn, minutes=240, seed=11)
    early = [t for t in streams if rng.random() < 0.9]
    late = [t for t in streams if t not in set(early)]
    early = ingest_in_batches(conn, rng, early)
    h.drive(dsn)
    before = bars_1m(conn)
    derived_before = h.derived(conn, SYMBOLS, with_meta=True)

    # late ticks, including new ticks for minutes that had none
    quiet = [
        Tick("TBTC", agg_start + dt.timedelta(minutes=m, seconds=30), last=50_000.0, size=2.0)
        for m in range(0, 240, 17)
        if ("TBTC", agg_start + dt.timedelta(minutes=m)) not in before
    ]
    assert quiet, "the stream should have quiet minutes"
    late = delivered(late + quiet)
    res = ingest(conn, late)
    assert res["rows_rejected"] == 0
    pending = conn.execute(
        "SELECT count(*) AS n FROM tickagg.agg_invalidations WHERE timeframe = '1m'"
    ).fetchone()["n"]
    assert pending > 0
    h.drive(dsn, max_windows=13)  # late minutes span more: several runs, the rest queued
    exp = assert_1m_matches(conn, early + late)
    assert_derived_match(conn, exp, agg_start)

    after = bars_1m(conn)
    late_minutes = {(t.symbol, t.ts.replace(second=0, microsecond=0)) for t in late}
    for k, a in after.items():
        if k in late_minutes and not (
            k in before
            and (before[k]["trade_count"], before[k]["close"], before[k]["open"])
            == (a["trade_count"], a["close"], a["open"])
            and before[k]["volume"] == a["volume"]
        ):
            assert a["source"] == "live_gap_filled", k
        elif k not in late_minutes:
            assert a["source"] == "live_aggregated" and a["change_no"] == before[k]["change_no"], k
    # the cascade revised exactly the derived buckets holding a late minute
    derived_after = h.derived(conn, SYMBOLS, with_meta=True)
    revised = {k for k, v in derived_after.items() if k in derived_before
               and v["change_no"] != derived_before[k]["change_no"]}  # fmt: skip
    assert revised, "late ticks must reach the derived bars"
    assert conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"] == 0


def test_identical_reaggregation_and_duplicates_are_noops(dsn, conn):
    rng, agg_start, streams = setup(conn, minutes=90, seed=3)
    sent = ingest_in_batches(conn, rng, streams)
    h.drive(dsn)
    before = bars_1m(conn)
    # the same deliveries again: all duplicates, nothing dirtied
    for delivery in sorted({t.delivery for t in sent}):
        res = ingest(conn, [t for t in sent if t.delivery == delivery])
        assert res["rows_landed"] == 0 and res["rows_rejected"] == 0, res
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM tickagg.agg_invalidations WHERE timeframe = '1m'"
        ).fetchone()["n"]
        == 0
    )
    # a minute re-aggregated from unchanged ticks keeps its live_aggregated bar
    conn.execute(
        "INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)"
        " SELECT canonical_symbol, '1m', tstzrange(ts_utc, ts_utc + interval '1 minute')"
        " FROM tickagg.data_bars"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'ticks_1m'"
    )
    h.drive(dsn)
    after = bars_1m(conn)
    assert {k: (v["source"], v["change_no"]) for k, v in after.items()} == {
        k: (v["source"], v["change_no"]) for k, v in before.items()
    }


def test_stopped_runner_catches_up_with_zero_gaps(dsn, conn):
    """The runner was down for the last hour of a stream: one catch-up later
    every minute with ticks has its bar and the rollups followed."""
    rng, agg_start, streams = setup(conn, minutes=360, seed=19)
    cut = agg_start + dt.timedelta(hours=5)
    sent = ingest_in_batches(conn, rng, [t for t in streams if t.ts < cut])
    h.drive(dsn)
    # as if that run had happened at `cut` (no mock clock): cursors back to it, a
    # rollup's to the start of its bucket holding `cut` (a cursor is always a bucket
    # boundary; that run would not have closed the bucket)
    conn.execute(
        """
        UPDATE tickagg.data_agg_state AS s SET last_agg_bar_ts_utc = least(
            s.last_agg_bar_ts_utc,
            CASE s.task_kind
                WHEN 'rollup'
                    THEN lower(tickagg.bucket_bounds(r.calendar_code, s.timeframe, %(cut)s))
                ELSE %(cut)s
            END)
        FROM tickagg.core_asset_registry_all AS r
        WHERE r.canonical_symbol = s.canonical_symbol AND s.task_kind IN ('ticks_1m', 'rollup')
        """,
        {"cut": cut},
    )
    # ... then stopped for an hour while ticks kept coming
    sent += ingest_in_batches(conn, rng, [t for t in streams if t.ts >= cut])
    h.drive(dsn)
    exp = assert_1m_matches(conn, sent)
    assert_derived_match(conn, exp, agg_start)
    # nothing was late: the hour was aggregated by the forward pass
    assert {r["source"] for r in conn.execute("SELECT source FROM tickagg.data_bars")} == {
        "live_aggregated"
    }
    missing = conn.execute(
        "SELECT count(*) AS n FROM generate_series(%s::timestamptz, %s::timestamptz - interval"
        " '1 minute', interval '1 minute') AS m (ts)"
        " WHERE EXISTS (SELECT 1 FROM tickagg.ticks AS t WHERE t.ts_utc >= m.ts"
        "   AND t.ts_utc < m.ts + interval '1 minute')"
        " AND NOT EXISTS (SELECT 1 FROM tickagg.data_bars AS b WHERE b.ts_utc = m.ts)",
        (cut, cut + dt.timedelta(hours=1)),
    ).fetchone()["n"]
    assert missing == 0


def test_sql_path_rejects_bad_ticks_and_lands_good_ones(conn):
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register_ticks(conn, "TBTC", "crypto_24x7", "last")
    register_ticks(conn, "TEUR", "crypto_24x7", "mid")
    h.register(conn, "BARS", "crypto_24x7")
    h.sync(conn, now - dt.timedelta(hours=1))
    t = now - dt.timedelta(minutes=5)
    inf, nan = float("inf"), float("nan")
    rows = [
        ("TBTC", t, None, None, 100.0, 1.0, None),
        ("TEUR", t, 1.0, 1.1, None, None, None),
        ("NOPE", t, None, None, 100.0, 1.0, "unknown symbol 'NOPE'"),
        ("BARS", t, None, None, 100.0, 1.0, "is not tick-fed"),
        ("TEUR", t, 1.2, 1.1, None, None, "bid 1.2 is above ask 1.1"),
        ("TBTC", t, None, None, -1.0, 1.0, "last -1 is not a positive finite number"),
        ("TBTC", t, None, None, nan, 1.0, "last NaN is not a positive finite number"),
        ("TBTC", t, None, None, inf, 1.0, "last Infinity is not a positive finite number"),
        ("TBTC", t, None, None, 100.0, -2.0, "size -2 is not a non-negative finite number"),
        ("TBTC", now + dt.timedelta(hours=1), None, None, 100.0, 1.0, "in the future"),
        ("TBTC", now - dt.timedelta(days=30), None, None, 100.0, 1.0, "older than ticks_retention"),
        ("TBTC", t, 1.0, 1.1, None, None, "last is required"),
        ("TEUR", t, None, None, 1.0, None, "bid and ask are required"),
        ("TBTC", None, None, None, 100.0, None, "ts_utc is missing"),
    ]
    res = conn.execute(
        "SELECT tickagg.ingest_ticks(%s, %s, %s, %s, %s, %s) AS r",
        tuple([r[i] for r in rows] for i in range(6)),
    ).fetchone()["r"]
    assert res["rows_landed"] == 2 and res["rows_rejected"] == len(rows) - 2
    got = {
        r["line_no"]: r["reason"]
        for r in conn.execute("SELECT line_no, reason FROM tickagg.tick_rejects")
    }
    for pos, row in enumerate(rows, start=1):
        if row[6] is None:
            assert pos not in got
        else:
            assert row[6] in got[pos], (pos, got[pos])
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 2
