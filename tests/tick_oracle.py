"""An independent Python model of ticks -> 1-minute bars, from the issue's rules:
a tick's identity is its trade id when it has one, else its content and its
occurrence among identical ticks of the same delivery (a file, a call), so
identical ticks of one delivery are distinct trades and a tick delivered again
counts once (the first arrival); open/close are the first
and last tick by (ts_utc, arrival order), volume is the sum of sizes when any
tick of the minute has one, else the tick count, vwap the size-weighted price
(the mean price without sizes), price = last or (bid + ask) / 2.

Prices are multiples of 1/1024 and sizes small integers, so sums are exact in
float8 whatever order SQL adds in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterable, Sequence

from oracle import Bar1m

UTC = dt.UTC


@dataclasses.dataclass(frozen=True)
class Tick:
    symbol: str
    ts: dt.datetime
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    size: float | None = None
    trade_id: str | None = None
    delivery: int = 0  # which file or call brought it

    def key(self) -> tuple:
        """The content: every field but the trade id and the delivery."""
        return (self.symbol, self.ts, self.bid, self.ask, self.last, self.size)


def minute_of(ts: dt.datetime) -> dt.datetime:
    return ts.replace(second=0, microsecond=0)


def expected_1m(arrivals: Iterable[Tick], price_kind: dict[str, str]) -> dict:
    """{(symbol, minute): Bar1m} from ticks in arrival order."""
    seen: set = set()
    occurrences: dict[tuple, int] = {}
    by_minute: dict[tuple[str, dt.datetime], list[tuple]] = {}
    for seq, t in enumerate(arrivals):
        if t.trade_id is not None:
            identity = (t.symbol, t.ts, t.trade_id)
        else:
            n = occurrences[t.delivery, t.key()] = occurrences.get((t.delivery, t.key()), 0) + 1
            identity = (t.key(), n)
        if identity in seen:
            continue
        seen.add(identity)
        price = (t.bid + t.ask) / 2 if price_kind[t.symbol] == "mid" else t.last
        by_minute.setdefault((t.symbol, minute_of(t.ts)), []).append((t.ts, seq, price, t.size))
    out = {}
    for key, rows in by_minute.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        prices = [r[2] for r in rows]
        sizes = [r[3] for r in rows if r[3] is not None]
        if sizes:
            volume = float(sum(sizes))
            notional = sum(r[2] * r[3] for r in rows if r[3] is not None)
            vwap = notional / volume if volume > 0 else sum(prices) / len(prices)
            kind = "size"
        else:
            volume = float(len(rows))
            vwap = sum(prices) / len(prices)
            kind = "ticks"
        vwap = max(min(prices), min(max(prices), vwap))
        bar = Bar1m(
            open=prices[0],
            high=max(prices),
            low=min(prices),
            close=prices[-1],
            volume=volume,
            vwap=vwap,
            trade_count=len(rows),
            source="live_aggregated",
        )
        out[key] = (bar, kind)
    return out


def _p(x: float) -> float:
    return round(x * 1024) / 1024


def random_ticks(
    rng: random.Random,
    symbol: str,
    price_kind: str,
    start: dt.datetime,
    minutes: int,
    base: float,
) -> list[Tick]:
    """A stream with bursts, quiet minutes, equal timestamps and duplicates,
    returned in timestamp order (callers shuffle arrival as they like)."""
    ticks: list[Tick] = []
    price = base
    for m in range(minutes):
        mstart = start + dt.timedelta(minutes=m)
        r = rng.random()
        if r < 0.15:
            continue  # quiet minute
        n = rng.randint(30, 120) if r > 0.9 else rng.randint(1, 8)  # bursts
        for _ in range(n):
            ts = mstart + dt.timedelta(microseconds=rng.randrange(60_000_000))
            if ticks and rng.random() < 0.1 and minute_of(ticks[-1].ts) == mstart:
                ts = ticks[-1].ts  # equal timestamp, different content
            price = max(1.0, _p(price + rng.choice((-1, 0, 1)) / 64))
            if price_kind == "mid":
                spread = rng.randint(0, 3) / 1024
                t = Tick(symbol, ts, bid=_p(price), ask=_p(price + spread))
            else:
                size = None if rng.random() < 0.2 else float(rng.randint(0, 9))
                t = Tick(symbol, ts, last=_p(price), size=size)
            ticks.append(t)
            if rng.random() < 0.05:
                ticks.append(t)  # exact duplicate
    ticks.sort(key=lambda t: t.ts)
    return ticks


def shuffled_arrival(rng: random.Random, ticks: Sequence[Tick], window: int = 20) -> list[Tick]:
    """Out-of-order arrival: each tick may swap with one up to `window` places later."""
    out = list(ticks)
    for i in range(len(out)):
        j = min(len(out) - 1, i + rng.randrange(window))
        if rng.random() < 0.3:
            out[i], out[j] = out[j], out[i]
    return out
