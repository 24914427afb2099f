"""Realistic synthetic 1-minute bars for the demo and tests.

Geometric random walk per symbol with intraday volume seasonality; forex only
inside Sunday 17:00 -> Friday 17:00 America/New_York (zoneinfo, so DST is
right), crypto 24x7; random holes of 1-90 minutes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from collections.abc import Iterator
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    calendar: str  # forex_24x5 | crypto_24x7
    price: float  # starting price
    decimals: int
    sigma_1m: float  # per-minute log-return stdev
    volume_1m: float  # median volume per minute
    asset_class: str
    mandatory: bool = False


DEMO_SYMBOLS = (
    SymbolSpec("EURUSD", "forex_24x5", 1.0850, 5, 0.00011, 1200, "forex", True),
    SymbolSpec("GBPUSD", "forex_24x5", 1.2700, 5, 0.00013, 900, "forex"),
    SymbolSpec("USDJPY", "forex_24x5", 151.20, 3, 0.00012, 1100, "forex"),
    SymbolSpec("BTCUSD", "crypto_24x7", 64000.0, 2, 0.0009, 2.5, "crypto"),
    SymbolSpec("ETHUSD", "crypto_24x7", 3400.0, 2, 0.0011, 35.0, "crypto"),
)

# (symbol, ts_utc datetime, open, high, low, close, volume, source)
Bar = tuple


def forex_open(ts: dt.datetime) -> bool:
    """Sunday 17:00 to Friday 17:00 New York time."""
    ny = ts.astimezone(NEW_YORK)
    wd = ny.weekday()  # Mon=0 .. Sun=6
    if wd == 5:
        return False
    if wd == 4:
        return ny.hour < 17
    if wd == 6:
        return ny.hour >= 17
    return True


def is_open(calendar: str, ts: dt.datetime) -> bool:
    if calendar == "forex_24x5":
        return forex_open(ts)
    return True


def latest_completed_hour(now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


def _volume_factor(ts: dt.datetime, calendar: str) -> float:
    # busier in London/NY hours for forex, US afternoon for crypto
    h = ts.hour + ts.minute / 60
    if calendar == "forex_24x5":
        return (
            0.4 + 1.2 * math.exp(-(((h - 14) / 4.0) ** 2)) + 0.5 * math.exp(-(((h - 8) / 3.0) ** 2))
        )
    return 0.7 + 0.6 * math.exp(-(((h - 16) / 5.0) ** 2))


def generate(
    spec: SymbolSpec,
    start: dt.datetime,
    end: dt.datetime,
    rng: random.Random,
    source: str = "polygon_historical",
    hole_rate_per_day: float = 1.5,
) -> Iterator[Bar]:
    """Bars for [start, end) in minute steps, with random holes."""
    total_minutes = int((end - start) / MINUTE)
    holes: list[tuple[int, int]] = []
    for _ in range(int(total_minutes / 1440 * hole_rate_per_day)):
        s = rng.randrange(total_minutes)
        holes.append((s, s + rng.randint(1, 90)))
    holes.sort()
    hole_i = 0
    price = spec.price
    q = 10**spec.decimals
    ts = start
    for i in range(total_minutes):
        ts = start + i * MINUTE
        # the walk runs every minute, so the price after a weekend/hole continues
        ret = rng.gauss(0, spec.sigma_1m)
        o = price
        c = price * math.exp(ret)
        price = c
        if not is_open(spec.calendar, ts):
            continue
        while hole_i < len(holes) and holes[hole_i][1] <= i:
            hole_i += 1
        if hole_i < len(holes) and holes[hole_i][0] <= i < holes[hole_i][1]:
            continue
        wick = abs(rng.gauss(0, spec.sigma_1m * 0.6))
        h = max(o, c) * (1 + wick)
        lo = min(o, c) * (1 - abs(rng.gauss(0, spec.sigma_1m * 0.6)))
        o_r, c_r = round(o * q) / q, round(c * q) / q
        h_r = max(round(h * q) / q, o_r, c_r)
        l_r = min(round(lo * q) / q, o_r, c_r)
        vol = spec.volume_1m * _volume_factor(ts, spec.calendar) * rng.lognormvariate(0, 0.5)
        vol = round(vol, 4) if vol < 100 else float(round(vol))
        yield (
            spec.symbol,
            ts,
            f"{o_r:.{spec.decimals}f}",
            f"{h_r:.{spec.decimals}f}",
            f"{l_r:.{spec.decimals}f}",
            f"{c_r:.{spec.decimals}f}",
            repr(vol),
            source,
        )


def correct(bar: Bar, rng: random.Random, source: str = "live_aggregated") -> Bar:
    """A corrected version of a bar from a higher-ranked source."""
    sym, ts, o, h, lo, c, v, _ = bar
    dec = len(c.split(".")[1]) if "." in c else 0
    bump = float(c) * rng.choice((-1, 1)) * rng.uniform(0.0002, 0.0008)
    c2 = float(c) + bump
    h2 = max(float(h), c2)
    l2 = min(float(lo), c2)
    return (
        sym,
        ts,
        o,
        f"{h2:.{dec}f}",
        f"{l2:.{dec}f}",
        f"{c2:.{dec}f}",
        repr(round(float(v) * 1.05, 4)),
        source,
    )
