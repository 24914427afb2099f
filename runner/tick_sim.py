"""A small live tick simulator (the demo and benchmarks/bench_ticks.py).

It replays a stretch of recent time at `speed` times real time: every step it
sends the ticks of the simulated time that passed through ``ingest_ticks``
(the SQL path producers use), one call per step. Minutes close on the data
rule -- the first tick of a later minute closes the earlier ones -- because a
past minute is closed by the clock at once; the replayed symbols' ticks_1m
tasks therefore get a long aggregation_delay (agg_task_set_delay) first.

Each minute close is recorded with the wall time its closing tick committed,
and ``close_latencies`` reads from ops_runlog when the run that wrote the 1m
bar (and the 5m bar, when the minute ends a 5m bucket) finished."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import statistics
import time

import psycopg

from . import queries

MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass
class SimSymbol:
    symbol: str
    price_kind: str  # 'last' (trades with sizes) or 'mid' (quotes only)
    price: float
    ticks_per_minute: float = 60.0


@dataclasses.dataclass
class MinuteClose:
    symbol: str
    minute: dt.datetime  # the minute that closed
    closed_at: dt.datetime  # wall time its closing tick committed


def ticks_between(rng: random.Random, s: SimSymbol, lo: dt.datetime, hi: dt.datetime):
    span = (hi - lo).total_seconds()
    n = sum(1 for _ in range(int(span * s.ticks_per_minute / 60 * 3)) if rng.random() < 1 / 3)
    out = []
    for us in sorted(rng.randrange(max(1, int(span * 1e6))) for _ in range(n)):
        s.price = max(0.01, round(s.price * (1 + rng.gauss(0, 0.0002)), 5))
        ts = lo + dt.timedelta(microseconds=us)
        if s.price_kind == "mid":
            spread = round(s.price * 0.0001, 5)
            out.append((s.symbol, ts, s.price, round(s.price + spread, 5), None, None))
        else:
            out.append((s.symbol, ts, None, None, s.price, float(rng.randint(1, 20))))
    return out


def replay(
    dsn: str,
    symbols: list[SimSymbol],
    start: dt.datetime,
    minutes: int,
    speed: float,
    seed: int = 1,
    step_seconds: float = 0.05,
) -> tuple[list[MinuteClose], int]:
    """Stream ticks for [start, start + minutes) at `speed` x real time.
    Returns the minute closes and the number of ticks sent."""
    rng = random.Random(seed)
    end = start + minutes * MINUTE
    last_minute: dict[str, dt.datetime] = {}
    closes: list[MinuteClose] = []
    sent = 0
    sim = start
    t0 = time.monotonic()
    step = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.row_factory = psycopg.rows.dict_row
        while sim < end:
            step += 1
            nxt = min(end, start + dt.timedelta(seconds=step * step_seconds * speed))
            batch = [t for s in symbols for t in ticks_between(rng, s, sim, nxt)]
            if batch:
                queries.ingest_ticks(conn, batch)
                committed = dt.datetime.now(dt.UTC)
                sent += len(batch)
                for sym, ts, *_ in batch:
                    minute = ts.replace(second=0, microsecond=0)
                    prev = last_minute.get(sym)
                    if prev is not None and minute > prev:
                        closes.append(MinuteClose(sym, prev, committed))
                    if prev is None or minute > prev:
                        last_minute[sym] = minute
            sim = nxt
            pause = t0 + step * step_seconds - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    return closes, sent


def close_latencies(conn, closes: list[MinuteClose]) -> dict[str, list[float]]:
    """Seconds from each minute close to the commit of the run that wrote its 1m
    bar, and its 5m bar when the minute ends a 5m bucket (ops_runlog.finished_at
    is taken just before that commit)."""
    out: dict[str, list[float]] = {"1m": [], "5m": []}
    for c in closes:
        row = conn.execute(
            "SELECT min(finished_at) AS done FROM tickagg.ops_runlog"
            " WHERE canonical_symbol = %s AND task_kind = 'ticks_1m' AND outcome = 'success'"
            " AND cursor_from <= %s AND cursor_to > %s",
            (c.symbol, c.minute, c.minute),
        ).fetchone()
        if row and row["done"]:
            out["1m"].append((row["done"] - c.closed_at).total_seconds())
        bucket_end = c.minute + MINUTE
        if bucket_end.minute % 5 == 0:
            row = conn.execute(
                "SELECT min(finished_at) AS done FROM tickagg.ops_runlog"
                " WHERE canonical_symbol = %s AND timeframe = '5m' AND task_kind = 'rollup'"
                " AND outcome = 'success' AND cursor_from <= %s AND cursor_to >= %s"
                # closed market time (a forex weekend) has no bar to wait for
                " AND EXISTS (SELECT 1 FROM tickagg.derived_data_bars AS d"
                "  WHERE d.canonical_symbol = %s AND d.timeframe = '5m' AND d.ts_utc = %s)",
                (c.symbol, bucket_end - 5 * MINUTE, bucket_end, c.symbol, bucket_end - 5 * MINUTE),
            ).fetchone()
            if row and row["done"]:
                out["5m"].append((row["done"] - c.closed_at).total_seconds())
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]
