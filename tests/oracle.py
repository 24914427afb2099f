"""An independent Python model of what tickagg must materialise.

Written from the specification (DESIGN.md + the calendar semantics), with
zoneinfo, never by calling the SQL functions. Given the 1-minute bars a symbol
has in data_bars, `expected_bars` returns every derived bar of 5m..1w that
must exist (deleted_at IS NULL) in derived_data_bars.

Prices are multiples of 1/1024 and volumes small integers in the generated
data, so every sum is exact in binary floating point whatever order SQL adds
in; that lets tests demand "derivation_version unchanged" when content is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import random
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
TIMEFRAMES = ("5m", "15m", "30m", "1h", "4h", "1d", "1w")
FIXED_STEPS = {
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "30m": dt.timedelta(minutes=30),
    "1h": dt.timedelta(hours=1),
    "4h": dt.timedelta(hours=4),
}
USABLE_PCT = 80
SOURCE_RANK = {"live_aggregated": 30, "live_gap_filled": 20, "historical_aggregated": 10}


def source_rank(source: str) -> int:
    return SOURCE_RANK.get(source, 0)


@dataclasses.dataclass(frozen=True)
class CalendarSpec:
    tz: str
    open_offset: dt.timedelta
    close_offset: dt.timedelta
    trading_isodows: frozenset[int]


CALENDARS = {
    "forex_24x5": CalendarSpec(
        "America/New_York", dt.timedelta(hours=-7), dt.timedelta(hours=17), frozenset(range(1, 6))
    ),
    "crypto_24x7": CalendarSpec(
        "UTC", dt.timedelta(0), dt.timedelta(hours=24), frozenset(range(1, 8))
    ),
    "us_equity": CalendarSpec(
        "America/New_York",
        dt.timedelta(hours=9, minutes=30),
        dt.timedelta(hours=16),
        frozenset(range(1, 6)),
    ),
    "nse_equity": CalendarSpec(
        "Asia/Kolkata",
        dt.timedelta(hours=9, minutes=15),
        dt.timedelta(hours=15, minutes=30),
        frozenset(range(1, 6)),
    ),
}


@dataclasses.dataclass(frozen=True)
class Session:
    trading_date: dt.date
    open: dt.datetime
    close: dt.datetime
    is_trading: bool


class Calendar:
    def __init__(self, code: str, holidays: Mapping[dt.date, dt.time | None] | None = None):
        """holidays: trading date -> None (closed all day) or the local early close."""
        self.code = code
        self.spec = CALENDARS[code]
        self.zone = ZoneInfo(self.spec.tz)
        self.holidays = dict(holidays or {})

    def _wall(self, day: dt.date, offset: dt.timedelta) -> dt.datetime:
        """Local wall-clock `day + offset` in the calendar's zone, as UTC."""
        naive = dt.datetime.combine(day, dt.time()) + offset
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    @functools.cache  # noqa: B019 - a handful of calendars per test run
    def session(self, day: dt.date) -> Session:
        close = self.spec.close_offset
        trading = day.isoweekday() in self.spec.trading_isodows
        if day in self.holidays:
            early = self.holidays[day]
            if early is None:
                trading = False
            else:
                close = dt.timedelta(hours=early.hour, minutes=early.minute)
        return Session(day, self._wall(day, self.spec.open_offset), self._wall(day, close), trading)

    def session_of(self, ts: dt.datetime) -> Session | None:
        local = ts.astimezone(self.zone).date()
        for delta in (-1, 0, 1, 2):
            s = self.session(local + dt.timedelta(days=delta))
            if s.open <= ts < s.close:
                return s
        return None

    def sessions_between(self, start: dt.date, end: dt.date) -> list[Session]:
        """Sessions of trading dates start..end inclusive."""
        return [self.session(start + dt.timedelta(days=i)) for i in range((end - start).days + 1)]

    @functools.cache  # noqa: B019
    def week(self, day: dt.date) -> tuple[dt.datetime, dt.datetime, int]:
        monday = day - dt.timedelta(days=day.isoweekday() - 1)
        start = self._wall(monday, self.spec.open_offset)
        end = self._wall(monday + dt.timedelta(days=7), self.spec.open_offset)
        expected = 0
        for s in self.sessions_between(monday, monday + dt.timedelta(days=6)):
            if s.is_trading:
                expected += _minutes(s.close - s.open)
        return start, end, expected

    def bucket(
        self, timeframe: str, ts: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime, int] | None:
        """(start, end, expected_candles) of the bucket holding ts, None outside sessions."""
        s = self.session_of(ts)
        if s is None:
            return None
        if timeframe == "1w":
            return self.week(s.trading_date)
        if timeframe == "1d":
            start, end = s.open, s.close
        else:
            step = FIXED_STEPS[timeframe]
            k = (ts - s.open) // step
            start = s.open + k * step
            end = min(start + step, s.close)
        return start, end, _minutes(end - start) if s.is_trading else 0


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


@dataclasses.dataclass
class Bar1m:
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None
    trade_count: int | None = None
    source: str = "polygon_historical"


@dataclasses.dataclass
class _Acc:
    end: dt.datetime
    expected: int
    first_ts: dt.datetime
    open: float
    last_ts: dt.datetime
    close: float
    high: float
    low: float
    volume: float = 0.0
    vwap_num: float = 0.0
    vwap_ok: bool = True
    trade_count: int | None = None
    n: int = 0


def expected_bars(
    symbol: str,
    calendar_code: str,
    bars: Mapping[dt.datetime, Bar1m],
    agg_start: dt.datetime,
    timeframes: Iterable[str] = TIMEFRAMES,
    holidays: Mapping[dt.date, dt.time | None] | None = None,
) -> dict[tuple[str, str, dt.datetime], dict]:
    """Derived bars keyed (symbol, timeframe, bucket_start UTC)."""
    cal = Calendar(calendar_code, holidays)
    out: dict[tuple[str, str, dt.datetime], dict] = {}
    for tf in timeframes:
        accs: dict[dt.datetime, _Acc] = {}
        for ts in sorted(bars):
            b = bars[ts]
            bk = cal.bucket(tf, ts)
            if bk is None:
                continue
            start, end, expected = bk
            if start < agg_start:
                continue
            a = accs.get(start)
            if a is None:
                a = accs[start] = _Acc(end, expected, ts, b.open, ts, b.close, b.high, b.low)
            if ts < a.first_ts:
                a.first_ts, a.open = ts, b.open
            if ts >= a.last_ts:
                a.last_ts, a.close = ts, b.close
            a.high = max(a.high, b.high)
            a.low = min(a.low, b.low)
            a.volume += b.volume
            if b.vwap is None and b.volume > 0:
                a.vwap_ok = False
            elif b.vwap is not None:
                a.vwap_num += b.vwap * b.volume
            if b.trade_count is not None:
                a.trade_count = (a.trade_count or 0) + b.trade_count
            a.n += 1
        for start, a in accs.items():
            if a.n >= a.expected:
                quality = 2
            elif a.n * 100 >= a.expected * USABLE_PCT:
                quality = 1
            else:
                quality = 0
            out[(symbol, tf, start)] = {
                "bucket_end": a.end,
                "open": a.open,
                "high": a.high,
                "low": a.low,
                "close": a.close,
                "volume": a.volume,
                "vwap": a.vwap_num / a.volume if a.vwap_ok and a.volume > 0 else None,
                "trade_count": a.trade_count,
                "source_candles": a.n,
                "expected_candles": a.expected,
                "quality_score": quality,
                "is_partial": a.n < a.expected,
            }
    return out


FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "vwap")
EXACT_FIELDS = (
    "bucket_end",
    "trade_count",
    "source_candles",
    "expected_candles",
    "quality_score",
    "is_partial",
)
CONTENT_FIELDS = EXACT_FIELDS + FLOAT_FIELDS


def diff(expected: Mapping, actual: Mapping, limit: int = 15) -> list[str]:
    """Human-readable differences between two {key: bar} maps (empty when equal)."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    for k in missing[:limit]:
        problems.append(f"missing {k}: {expected[k]}")
    for k in extra[:limit]:
        problems.append(f"unexpected {k}: {actual[k]}")
    if missing or extra:
        problems.append(f"({len(missing)} missing, {len(extra)} unexpected in total)")
    for k in sorted(set(expected) & set(actual)):
        e, a = expected[k], actual[k]
        bad = [f for f in EXACT_FIELDS if e[f] != a[f]]
        for f in FLOAT_FIELDS:
            if (e[f] is None) != (a[f] is None) or (
                e[f] is not None and not math.isclose(e[f], a[f], rel_tol=1e-9, abs_tol=1e-12)
            ):
                bad.append(f)
        if bad:
            problems.append(
                f"{k}: " + ", ".join(f"{f} expected {e[f]!r} got {a[f]!r}" for f in bad)
            )
            if len(problems) > 3 * limit:
                break
    return problems


# --- random data ---------------------------------------------------------------


def _price(x: float) -> float:
    """Snap to a multiple of 1/1024: sums of such values are exact in float8."""
    return round(x * 1024) / 1024


def random_bars(
    calendar_code: str,
    first_day: dt.date,
    last_day: dt.date,
    rng: random.Random,
    *,
    base: float = 100.0,
    with_vwap: bool = True,
    with_trade_count: bool = True,
    source: str = "polygon_historical",
    hole_rate: float = 0.004,
    off_session_rate: float = 0.3,
) -> dict[dt.datetime, Bar1m]:
    """1m bars for the sessions of first_day..last_day: holes of minutes to hours,
    a few bars in non-trading sessions (weekends) and, for calendars with closed
    hours, a few bars outside every session (which must be ignored)."""
    cal = Calendar(calendar_code)
    out: dict[dt.datetime, Bar1m] = {}
    price = base

    def bar() -> Bar1m:
        nonlocal price
        price = max(1.0, price * (1 + rng.gauss(0, 0.0015)))
        o = _price(price)
        c = _price(price * (1 + rng.gauss(0, 0.001)))
        h = _price(max(o, c) * (1 + abs(rng.gauss(0, 0.0007)))) + 1 / 1024
        lo = _price(min(o, c) * (1 - abs(rng.gauss(0, 0.0007)))) - 1 / 1024
        vol = float(rng.randint(1, 500))
        vwap = None
        if with_vwap and rng.random() > 0.002:  # now and then one bar lacks a vwap
            vwap = _price(rng.uniform(lo, h))
        tc = rng.randint(1, 60) if with_trade_count else None
        return Bar1m(o, h, lo, c, vol, vwap, tc, source)

    for s in cal.sessions_between(first_day, last_day):
        n = _minutes(s.close - s.open)
        if s.is_trading:
            i = 0
            while i < n:
                if rng.random() < hole_rate:
                    i += rng.choice((rng.randint(1, 12), rng.randint(30, 300)))
                    continue
                out[s.open + i * MINUTE] = bar()
                i += 1
        elif rng.random() < off_session_rate:
            i = rng.randrange(n)
            for j in range(rng.randint(1, 20)):
                if i + j < n:
                    out[s.open + (i + j) * MINUTE] = bar()
        if s.close - s.open < dt.timedelta(hours=20) and rng.random() < off_session_rate:
            # closed market hours after this session: never aggregated
            t = s.close + rng.randint(1, 240) * MINUTE
            if cal.session_of(t) is None:
                out[t] = bar()
    return out
