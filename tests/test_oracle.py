"""Derived bars equal an independent Python oracle (tests/oracle.py), for random
data over the US DST switch weeks, after late data, corrections, lower-ranked
writes and deletions, and identical re-runs write nothing."""

from __future__ import annotations

import datetime as dt
import json
import random

import helpers as h
import pytest
from oracle import Bar1m, Calendar, diff, expected_bars, random_bars

UTC = dt.UTC
D = dt.date

# (symbol, calendar, base price, vwap, trade_count, source)
SYMBOLS = (
    ("FXA", "forex_24x5", 1.0859375, False, False, "historical_aggregated"),
    ("FXB", "forex_24x5", 150.0, True, True, "polygon_historical"),
    ("BTC", "crypto_24x7", 60000.0, True, True, "polygon_historical"),
    ("SPY", "us_equity", 500.0, True, True, "polygon_historical"),
    ("NIFTY", "nse_equity", 22000.0, True, True, "polygon_historical"),
)
# the weeks around the US DST switches of 2025-03-09 and 2025-11-02
RANGES = ((D(2025, 3, 1), D(2025, 3, 14)), (D(2025, 10, 25), D(2025, 11, 7)))


def build(seed: int, ranges=RANGES, symbols=SYMBOLS):
    print(f"dataset seed={seed}")
    rng = random.Random(seed)
    # agg_start off every boundary: buckets start at the first boundary at or after it
    agg_start = dt.datetime(2025, 3, 3, tzinfo=UTC) + dt.timedelta(
        minutes=rng.randint(0, 600), seconds=rng.choice((0, 17))
    )
    data = {}
    for sym, cal, base, vwap, tc, source in symbols:
        bars = {}
        for first, last in ranges:
            bars.update(
                random_bars(
                    cal,
                    first,
                    last,
                    rng,
                    base=base,
                    with_vwap=vwap,
                    with_trade_count=tc,
                    source=source,
                )
            )
        data[sym] = (cal, bars)
    return agg_start, data


def load(conn, agg_start, data, *, mandatory=()):
    for sym, (cal, _) in data.items():
        h.register(conn, sym, cal, mandatory=sym in mandatory)
    h.sync(conn, agg_start)
    for sym, (_, bars) in data.items():
        h.insert_bars(conn, sym, bars)


def oracle(agg_start, data):
    out = {}
    for sym, (cal, bars) in data.items():
        out.update(expected_bars(sym, cal, bars, agg_start))
    return out


def assert_matches(conn, agg_start, data):
    exp = oracle(agg_start, data)
    act = h.derived(conn, data)
    problems = diff(exp, act)
    assert not problems, "\n".join(problems)
    return exp


def force_due(conn):
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")


def versions(conn):
    return {k: v["derivation_version"] for k, v in h.derived(conn, with_meta=True).items()}


@pytest.mark.parametrize("seed", [20251102, 20250309, 7, 42])
def test_random_history_matches_oracle(dsn, conn, seed):
    agg_start, data = build(seed)
    load(conn, agg_start, data)
    totals = h.drive(dsn, split=seed % 2 == 1)
    assert totals["bars_written"] > 0
    exp = assert_matches(conn, agg_start, data)
    # every timeframe of every symbol has bars, including both DST weeks
    for sym in data:
        for tf in ("5m", "15m", "30m", "1h", "4h", "1d", "1w"):
            months = {k[2].month for k in exp if k[0] == sym and k[1] == tf}
            assert {3, 10, 11} <= months, (sym, tf, months)
    before = h.derived(conn, with_meta=True)
    assert all(v["derivation_version"] == 1 for v in before.values())

    # an identical re-run writes nothing
    force_due(conn)
    assert h.drive(dsn)["bars_written"] == 0
    if seed != 7:
        return
    # a full recompute from the bootstrap cursors writes nothing either
    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET last_agg_bar_ts_utc = tickagg.agg_bootstrap_cursor(canonical_symbol, timeframe),"
        " next_run_at = now()"
    )
    assert h.drive(dsn)["bars_written"] == 0
    assert h.derived(conn, with_meta=True) == before
    assert_matches(conn, agg_start, data)


def test_cli_run_until_idle_matches_oracle(dsn, conn):
    agg_start, data = build(99)
    load(conn, agg_start, data)
    p = h.run_cli(dsn, "run", "--until-idle", "--workers", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE status <> 'idle'"
        ).fetchone()["n"]
        == 0
    )
    assert h.pending_invalidations(conn) == 0
    assert_matches(conn, agg_start, data)


def _trading_minutes(cal: Calendar, first: dt.date, last: dt.date):
    for s in cal.sessions_between(first, last):
        if s.is_trading:
            t = s.open
            while t < s.close:
                yield t
                t += dt.timedelta(minutes=1)


def test_late_data_corrections_deletions(dsn, conn):
    seed = 314
    rng = random.Random(seed)
    ranges = ((D(2025, 10, 18), D(2025, 11, 14)),)
    agg_start, data = build(seed, ranges=ranges)
    load(conn, agg_start, data)
    h.drive(dsn)
    exp0 = assert_matches(conn, agg_start, data)
    v0 = versions(conn)
    untouched = ("FXB", "BTC", "NIFTY")
    meta0 = {s: h.all_rows_meta(conn, s) for s in untouched}

    fx_cal, fx = data["FXA"]
    spy_cal, spy = data["SPY"]
    cal = Calendar(fx_cal)
    minutes = list(_trading_minutes(cal, D(2025, 10, 20), D(2025, 11, 14)))
    existing = [t for t in minutes if t in fx]
    holes = [t for t in minutes if t not in fx]

    def fresh(source, around):
        p = round(around * 1024 * (1 + rng.uniform(0.01, 0.02))) / 1024
        return Bar1m(
            p,
            p + 4 / 1024,
            p - 4 / 1024,
            p + 1 / 1024,
            float(rng.randint(1, 50)),
            None,
            None,
            source,
        )

    # 1. late 1m bars behind every cursor (into holes), direct insert
    late = {t: fresh("historical_aggregated", 1.08) for t in rng.sample(holes, 300)}
    h.insert_bars(conn, "FXA", late)
    fx.update(late)
    # 2. corrections by a higher-ranked source through ingest
    corrected = rng.sample(existing, 200)
    corr_rows = [("FXA", t, fresh("live_gap_filled", fx[t].open)) for t in corrected]
    res = h.ingest(conn, corr_rows, "corrections.csv")
    assert res["rows_landed"] == 200 and res["rows_rejected"] == 0, res
    for _, t, b in corr_rows:
        fx[t] = b
    # 3. lower-ranked writes never win: vendor bars over rank-10 and rank-20 rows
    lower = rng.sample([t for t in existing if t not in set(corrected)], 100) + corrected[:50]
    res = h.ingest(
        conn, [("FXA", t, fresh("polygon_historical", 2.0)) for t in lower], "vendor.csv"
    )
    assert res["rows_landed"] == 0 and res["rows_outranked"] == 150, res
    assert res["rows_unchanged"] == 0, res
    # identical content again is a no-op
    res = h.ingest(conn, corr_rows[:20], "again.csv")
    assert res["rows_landed"] == 0, res
    # 4. deletions of whole buckets: one trading hour and one whole session of FXA,
    #    one whole session of SPY; late bars for SPY inside and outside its session
    hour = dt.datetime(2025, 10, 28, 14, tzinfo=UTC)
    fx_day = cal.session(D(2025, 11, 5))
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'FXA'"
        " AND ((ts_utc >= %s AND ts_utc < %s) OR (ts_utc >= %s AND ts_utc < %s))",
        (hour, hour + dt.timedelta(hours=1), fx_day.open, fx_day.close),
    )
    deleted_hour = {t: fx.pop(t) for t in list(fx) if hour <= t < hour + dt.timedelta(hours=1)}
    for t in [t for t in fx if fx_day.open <= t < fx_day.close]:
        del fx[t]
    assert deleted_hour
    spy_day = Calendar(spy_cal).session(D(2025, 11, 3))  # the Monday after the DST switch
    conn.execute(
        "DELETE FROM tickagg.data_bars"
        " WHERE canonical_symbol = 'SPY' AND ts_utc >= %s AND ts_utc < %s",
        (spy_day.open, spy_day.close),
    )
    for t in [t for t in spy if spy_day.open <= t < spy_day.close]:
        del spy[t]
    spy_late = {
        dt.datetime(2025, 11, 4, 14, 30, tzinfo=UTC) + i * dt.timedelta(minutes=1): fresh(
            "live_aggregated", 500
        )
        for i in range(0, 390, 7)
    }
    spy_late[dt.datetime(2025, 11, 4, 3, 0, tzinfo=UTC)] = fresh(
        "live_aggregated", 500
    )  # overnight
    for t in spy_late:
        spy.pop(t, None)
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'SPY' AND ts_utc = ANY(%s)",
        (list(spy_late),),
    )
    h.insert_bars(conn, "SPY", spy_late)
    spy.update(spy_late)

    h.drive(dsn)
    exp1 = assert_matches(conn, agg_start, data)

    # data_bars holds exactly the model (source priority respected)
    rows = conn.execute(
        "SELECT ts_utc, open, high, low, close, volume, source FROM tickagg.data_bars"
        " WHERE canonical_symbol = 'FXA'"
    ).fetchall()
    assert {r["ts_utc"]: (r["open"], r["close"], r["source"]) for r in rows} == {
        t: (b.open, b.close, b.source) for t, b in fx.items()
    }

    # soft deletes: the deleted hour's and day's buckets are still there, marked deleted
    gone = set(exp0) - set(exp1)
    assert any(k[0] == "FXA" and k[1] == "1h" and k[2] == hour for k in gone)
    assert any(k[0] == "FXA" and k[1] == "1d" and k[2] == fx_day.open for k in gone)
    assert any(k[0] == "SPY" and k[1] == "1d" and k[2] == spy_day.open for k in gone)
    deleted = {
        (r["canonical_symbol"], r["timeframe"], r["ts_utc"])
        for r in conn.execute(
            "SELECT * FROM tickagg.derived_data_bars WHERE deleted_at IS NOT NULL"
        )
    }
    assert gone == deleted

    # derivation_version moves exactly where content changed
    v1 = versions(conn)
    for k in set(exp0) & set(exp1):
        changed = diff({k: exp0[k]}, {k: exp1[k]}) != []
        if changed:
            assert v1[k] > v0[k], (k, exp0[k], exp1[k])
        else:
            assert v1[k] == v0[k], (k, v0[k], v1[k])
    for k in set(exp1) - set(exp0):
        assert v1[k] == 1, k

    # isolation: other symbols' rows untouched
    for s in untouched:
        assert h.all_rows_meta(conn, s) == meta0[s], s

    # 5. re-insert the deleted hour: its buckets reappear
    h.insert_bars(conn, "FXA", deleted_hour)
    fx.update(deleted_hour)
    h.drive(dsn)
    exp2 = assert_matches(conn, agg_start, data)
    back = h.derived(conn, ["FXA"], with_meta=True)
    assert back[("FXA", "1h", hour)]["derivation_version"] >= 3  # written, deleted, written
    assert ("FXA", "1h", hour) in exp2

    # identical re-run writes nothing and bumps nothing
    before = h.derived(conn, with_meta=True)
    force_due(conn)
    assert h.drive(dsn)["bars_written"] == 0
    assert h.derived(conn, with_meta=True) == before
    for s in untouched:
        assert h.all_rows_meta(conn, s) == meta0[s], s


def test_vwap_of_a_zero_volume_sub_bucket(dsn, conn):
    """A 5m bucket whose minutes all traded zero volume has vwap NULL; the 15m
    bucket over it still has every 1m vwap and positive volume, so a recompute
    from source gives a vwap there."""
    agg_start = dt.datetime(2025, 3, 3, tzinfo=UTC)
    t0 = dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    bars = {}
    for i in range(15):
        vol = 0.0 if i < 5 else 10.0
        bars[t0 + i * dt.timedelta(minutes=1)] = Bar1m(100.0, 101.0, 99.0, 100.5, vol, 100.25, 1)
    data = {"ZV": ("crypto_24x7", bars)}
    load(conn, agg_start, data)
    h.drive(dsn)
    assert_matches(conn, agg_start, data)


def test_correction_replaces_the_whole_row(dsn, conn):
    """A higher-ranked source replacing a 1m bar through ingest must not keep the
    replaced vendor row's vwap/trade_count (they describe other prices)."""
    agg_start = dt.datetime(2025, 3, 3, tzinfo=UTC)
    t = dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    h.register(conn, "CV", "crypto_24x7")
    h.sync(conn, agg_start)
    h.insert_bars(conn, "CV", {t: Bar1m(100.0, 101.0, 99.0, 100.5, 10.0, 100.25, 7)})
    res = h.ingest(
        conn, [("CV", t, Bar1m(200.0, 201.0, 199.0, 200.5, 3.0, None, None, "live_aggregated"))]
    )
    assert res["rows_landed"] == 1, res
    row = conn.execute(
        "SELECT open, source, vwap, trade_count FROM tickagg.data_bars"
        " WHERE canonical_symbol = 'CV'"
    ).fetchone()
    assert (row["open"], row["source"]) == (200.0, "live_aggregated")
    assert (row["vwap"], row["trade_count"]) == (None, None), row


def test_an_earlier_sync_start_derives_the_stretch_before_the_first_start(conn, dsn):
    """`sync --start` with an earlier date was ignored for existing tasks: minutes
    before the first start never got derived bars. It now rewinds them: a symbol
    already materialised gets the stretch through the late-data path, one not yet
    run starts over; the result equals the oracle from the new start."""
    agg_start, data = build(seed=41, ranges=((D(2025, 3, 1), D(2025, 3, 14)),))
    first_start = agg_start + dt.timedelta(days=5)
    run_first = {"FXA", "BTC", "SPY"}  # NIFTY and FXB are synced but never run before the rewind
    for sym, (cal, _) in data.items():
        h.register(conn, sym, cal)
    h.sync(conn, first_start)
    for sym, (_, bars) in data.items():
        h.insert_bars(conn, sym, bars)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false WHERE NOT canonical_symbol = ANY(%s)",
        (list(run_first),),
    )
    h.drive(dsn)
    early = h.derived(conn, run_first)
    assert early and min(k[2] for k in early) >= first_start
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = true")

    done = h.run_cli(dsn, "sync", "--start", agg_start.isoformat())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tasks_rewound"] > 0 and "rewound" in done.stderr
    h.drive(dsn)
    assert_matches(conn, agg_start, data)
    # the same start again rewinds nothing
    assert h.sync(conn, agg_start)["tasks_rewound"] == 0
