"""Randomized property test of late data (issue 3).

Per seed, two symbols (forex over the March US DST switch, US equities) start
with the first part of their history; then a random sequence interleaves new
minutes after the cursors, late minutes behind them, corrections by
higher-ranked sources, attempts by lower- and same-ranked sources, deletions of
single minutes and of whole buckets of a random timeframe, derived_rebuild_range
calls over random ranges, and partial runner passes that stop after a few
claims (so cursors sit anywhere mid catch-up). A bystander symbol is
materialised first and never written again. After a final drive to idle:

* every derived bar in every timeframe equals the full-recompute oracle;
* data_bars equals a Python model of the source-rank rule (a lower-ranked
  source never replaced a higher-ranked bar), and every ingest landed exactly
  the rows the model says;
* soft-deleted bars are exactly the buckets that once had a bar and that the
  oracle no longer has (and every bar ever seen live and now absent is kept,
  soft-deleted);
* the bystander's rows were never rewritten.

The seed is printed; rerun one with `pytest -k <seed> -s`.
"""

from __future__ import annotations

import datetime as dt
import random

import helpers as h
import pytest
from oracle import (
    TIMEFRAMES,
    Bar1m,
    Calendar,
    diff,
    expected_bars,
    random_bars,
    source_rank,
)

UTC = dt.UTC
D = dt.date
MINUTE = dt.timedelta(minutes=1)
SOURCES = ("polygon_historical", "historical_aggregated", "live_gap_filled", "live_aggregated")
# (symbol, calendar, base price, first day, last day)
ACTIVE = (
    ("FXP", "forex_24x5", 1.0859375, D(2025, 3, 2), D(2025, 3, 14)),
    ("EQP", "us_equity", 250.0, D(2025, 3, 3), D(2025, 3, 14)),
)
BYSTANDER = ("BYS", "crypto_24x7", 3000.0, D(2025, 3, 3), D(2025, 3, 7))
AGG_START = dt.datetime(2025, 3, 3, tzinfo=UTC)


def _price(x: float) -> float:
    return round(x * 1024) / 1024


class Model:
    """What data_bars must hold: the rank rule applied to every write."""

    def __init__(self, calendar: str, universe: dict[dt.datetime, Bar1m]):
        self.cal = Calendar(calendar)
        self.universe = universe  # the symbol's "true" history, revealed over time
        self.order = sorted(universe)
        self.revealed = 0  # universe minutes (in time order) loaded so far
        self.bars: dict[dt.datetime, Bar1m] = {}

    @property
    def horizon(self) -> dt.datetime:
        return self.order[self.revealed - 1] + MINUTE if self.revealed else self.order[0]

    def lands(self, ts: dt.datetime, bar: Bar1m) -> bool:
        old = self.bars.get(ts)
        if old is None:
            return True
        if source_rank(bar.source) != source_rank(old.source):
            return source_rank(bar.source) > source_rank(old.source)
        return bar != old

    def trading_minutes_before(self, end: dt.datetime) -> list[dt.datetime]:
        out = []
        for s in self.cal.sessions_between(self.order[0].date() - dt.timedelta(days=1), end.date()):
            if not s.is_trading:
                continue
            t = s.open
            while t < min(s.close, end):
                out.append(t)
                t += MINUTE
        return out


def fresh_bar(rng: random.Random, around: float, source: str) -> Bar1m:
    p = _price(around * (1 + rng.uniform(-0.01, 0.01)))
    high, low = p + rng.randint(1, 6) / 1024, p - rng.randint(1, 6) / 1024
    vwap = _price(rng.uniform(low, high)) if rng.random() < 0.7 else None
    return Bar1m(
        p,
        high,
        low,
        p + rng.choice((-1, 0, 1)) / 1024,
        float(rng.randint(0, 80)),
        vwap,
        rng.randint(1, 40) if rng.random() < 0.7 else None,
        source,
    )


def write(conn, sym: str, model: Model, bars: dict[dt.datetime, Bar1m], log: list) -> None:
    """Land bars through the real ingest path and check the model's rank rule."""
    if not bars:
        return
    landing = {t: b for t, b in bars.items() if model.lands(t, b)}
    res = h.ingest(conn, [(sym, t, b) for t, b in bars.items()], f"{sym}-{len(log)}.csv")
    assert res["rows_rejected"] == 0, res
    assert res["rows_landed"] == len(landing), (res, len(landing), log[-1:])
    model.bars.update(landing)


def rebuild(conn, sym: str, tf: str, start, end) -> dict:
    return conn.execute(
        "SELECT tickagg.derived_rebuild_range(p_canonical_symbol => %s, p_timeframe => %s,"
        " p_from => %s, p_to => %s) AS r",
        (sym, tf, start, end),
    ).fetchone()["r"]


def live_keys(conn, symbols) -> set:
    return set(h.derived(conn, symbols))


@pytest.mark.parametrize("seed", [3, 1009, 20250309, 77777])
def test_late_data_property(dsn, conn, seed):
    print(f"late-data property seed={seed}")
    rng = random.Random(seed)
    models: dict[str, Model] = {}
    for sym, cal, base, first, last in ACTIVE:
        models[sym] = Model(cal, random_bars(cal, first, last, rng, base=base, hole_rate=0.01))
        h.register(conn, sym, cal)
    bsym, bcal, bbase, bfirst, blast = BYSTANDER
    h.register(conn, bsym, bcal)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    # The history is in the past: close buckets at the newest minute, not at
    # now() - delay, so new minutes after the cursors are not late.
    conn.execute(
        "UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years'"
        " WHERE canonical_symbol <> %s",
        (bsym,),
    )
    bystander = random_bars(bcal, bfirst, blast, rng, base=bbase)
    h.insert_bars(conn, bsym, bystander)
    h.drive(dsn)
    bystander_meta = h.all_rows_meta(conn, bsym)
    assert bystander_meta

    log: list[str] = []

    def reveal(sym: str, model: Model, n: int) -> None:
        chunk = model.order[model.revealed : model.revealed + n]
        model.revealed += len(chunk)
        write(conn, sym, model, {t: model.universe[t] for t in chunk}, log)

    for sym, m in models.items():
        reveal(sym, m, len(m.order) * rng.randint(25, 45) // 100)

    seen: set = set()
    ops = ("append", "late", "correct", "lower", "same", "del_min", "del_bucket", "rebuild")
    weights = (3, 3, 3, 2, 1, 2, 2, 2)
    for _ in range(70):
        sym = rng.choice(list(models))
        m = models[sym]
        if rng.random() < 0.3:
            k = rng.choice((1, 2, 3, 5, 8, 13, 40))
            mw = rng.choice((1, 3, 20, 300, None))
            log.append(f"drive claims={k} max_windows={mw}")
            h.partial_drive(dsn, k, max_windows=mw)
            seen |= live_keys(conn, models)
            continue
        op = rng.choices(ops, weights)[0]
        existing = sorted(m.bars)
        log.append(f"{op} {sym}")
        if op == "append" and m.revealed < len(m.order):
            reveal(sym, m, rng.randint(1, 2500))
        elif op == "late":
            holes = [t for t in m.trading_minutes_before(m.horizon) if t not in m.bars]
            picks = rng.sample(holes, min(len(holes), rng.choice((1, 5, 60))))
            around = m.bars[existing[-1]].close
            write(
                conn, sym, m, {t: fresh_bar(rng, around, rng.choice(SOURCES)) for t in picks}, log
            )
        elif op in ("correct", "lower", "same"):
            picks = rng.sample(existing, min(len(existing), rng.choice((1, 4, 30))))
            bars = {}
            for t in picks:
                r = source_rank(m.bars[t].source)
                if op == "correct":
                    choices = [s for s in SOURCES if source_rank(s) > r]
                elif op == "lower":
                    choices = [s for s in SOURCES if source_rank(s) < r]
                else:
                    choices = [s for s in SOURCES if source_rank(s) == r]
                if choices:
                    bars[t] = fresh_bar(rng, m.bars[t].open, rng.choice(choices))
            if op == "lower":
                assert not any(m.lands(t, b) for t, b in bars.items())
            write(conn, sym, m, bars, log)
        elif op == "del_min" and existing:
            picks = rng.sample(existing, min(len(existing), rng.choice((1, 3, 10))))
            conn.execute(
                "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (sym, picks),
            )
            for t in picks:
                del m.bars[t]
        elif op == "del_bucket" and existing:
            tf = rng.choice(("5m", "15m", "1h", "4h", "1d"))
            bk = m.cal.bucket(tf, rng.choice(existing))
            if bk is not None:
                start, end, _ = bk
                log[-1] += f" {tf} {start}"
                conn.execute(
                    "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s"
                    " AND ts_utc >= %s AND ts_utc < %s",
                    (sym, start, end),
                )
                for t in [t for t in existing if start <= t < end]:
                    del m.bars[t]
        elif op == "rebuild":
            tf = rng.choice(TIMEFRAMES)
            if rng.random() < 0.2:
                start, end = "-infinity", "infinity"
            else:
                start = AGG_START + dt.timedelta(minutes=rng.randint(-600, 12 * 24 * 60))
                end = start + dt.timedelta(minutes=rng.choice((1, 7, 90, 1440, 5 * 1440)))
            log[-1] += f" {tf} [{start}, {end})"
            res = rebuild(conn, sym, tf, start, end)
            assert set(res) >= {"buckets_rebuilt", "bars_written", "bars_deleted", "from", "to"}
            if res["from"] is not None:
                assert res["from"] < res["to"]

    # everything left arrives; the final drive closes every bucket
    for sym, m in models.items():
        reveal(sym, m, len(m.order))
    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET aggregation_delay = interval '2 minutes', next_run_at = now()"
    )
    h.drive(dsn)
    print(f"{len(log)} operations: " + "; ".join(log))

    expected = {}
    for sym, m in models.items():
        cal = m.cal.code
        expected.update(expected_bars(sym, cal, m.bars, AGG_START))
    actual = h.derived(conn, models)
    problems = diff(expected, actual)
    assert not problems, "\n".join(problems)

    # the rank rule held for every write: data_bars is exactly the model
    for sym, m in models.items():
        rows = conn.execute(
            "SELECT ts_utc, open, high, low, close, volume, vwap, trade_count, source, source_rank"
            " FROM tickagg.data_bars WHERE canonical_symbol = %s",
            (sym,),
        ).fetchall()
        got = {
            r["ts_utc"]: Bar1m(
                r["open"], r["high"], r["low"], r["close"], r["volume"], r["vwap"],
                r["trade_count"], r["source"],
            )
            for r in rows
        }  # fmt: skip
        assert got == m.bars, sym
        assert all(r["source_rank"] == source_rank(r["source"]) for r in rows)

    # soft deletes: exactly the rows whose bucket the oracle no longer has
    every_row = {
        (r["canonical_symbol"], r["timeframe"], r["ts_utc"].astimezone(UTC)): r["deleted_at"]
        for r in conn.execute(
            "SELECT canonical_symbol, timeframe, ts_utc, deleted_at FROM tickagg.derived_data_bars"
            " WHERE canonical_symbol = ANY(%s)",
            (list(models),),
        )
    }
    soft_deleted = {k for k, d in every_row.items() if d is not None}
    assert soft_deleted == set(every_row) - set(expected)
    assert seen - set(expected) <= soft_deleted, "a bar seen live vanished without a soft delete"
    print(f"{len(expected)} bars match the oracle; {len(soft_deleted)} soft-deleted")

    # nothing above was written for the bystander
    assert h.all_rows_meta(conn, bsym) == bystander_meta
    assert h.pending_invalidations(conn) == 0


def test_one_late_bar_costs_one_run(dsn, conn):
    """The late path is exact: one late minute re-materialises one bucket per
    timeframe, all seven in one run (the 5m task's, which cascades up), and touches
    nothing of another symbol -- also when the tasks' next scheduled run is still
    ahead."""
    rng = random.Random(5)
    for sym, cal, *_ in ACTIVE:
        h.register(conn, sym, cal)
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    models = {}
    for sym, cal, base, first, last in ACTIVE:
        models[sym] = random_bars(cal, first, last, rng, base=base, hole_rate=0.01)
        h.insert_bars(conn, sym, models[sym])
    h.drive(dsn)
    other = h.all_rows_meta(conn, "EQP")
    # every task has just run: its next scheduled run is run_interval ahead
    assert conn.execute(
        "SELECT bool_and(next_run_at > now()) AS ok FROM tickagg.data_agg_state WHERE enabled"
    ).fetchone()["ok"]
    t = min(ts for ts in models["FXP"] if ts >= dt.datetime(2025, 3, 12, 15, 7, tzinfo=UTC))
    before = max(v[0] for v in h.all_rows_meta(conn, "FXP").values())
    res = h.ingest(conn, [("FXP", t, fresh_bar(rng, 1.1, "live_aggregated"))])
    assert res["rows_landed"] == 1
    totals = h.drive(dsn)
    changed = [k for k, v in h.all_rows_meta(conn, "FXP").items() if v[0] > before]
    assert sorted(tf for tf, _ in changed) == sorted(TIMEFRAMES), changed
    assert h.all_rows_meta(conn, "EQP") == other
    assert totals["claims"] == 1, totals
    assert totals["bars_written"] == len(TIMEFRAMES), totals
