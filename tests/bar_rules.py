"""An independent expectation of the bar ingest rules (db/functions
bar_rejection_reason, parse_timestamptz, parse_float8, ingest_staged_bars),
written from the documented rules, for the tests that compare ingest's rows and
rejects with it one by one."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal

UTC = dt.UTC
# the documented shapes (parse_timestamptz, parse_float8), with the parts captured
TS_SHAPE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*"
    r"(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
RANK = {"polygon_historical": 0, "historical_aggregated": 10, "live_gap_filled": 20}
NUMBER_SHAPE = re.compile(r"^ *[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})? *$")


def timestamp_of(text: str | None) -> dt.datetime | None:
    m = TS_SHAPE.match(text or "")
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        value = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                            int((frac or "0").ljust(6, "0")), tzinfo=UTC)  # fmt: skip
    except ValueError:
        return None
    if zone and zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        value -= offset if zone[0] == "+" else -offset
    return value


def number_of(text: str | None) -> float | None:
    if text is None or len(text) > 40 or not NUMBER_SHAPE.match(text):
        return None
    value = float(text)
    # every finite double, but not what overflows or underflows to zero
    if not math.isfinite(value) or (value == 0 and Decimal(text) != 0):
        return None
    return value


def quote(text: str | None) -> str:
    """As format('%L') quotes a field in a reject's reason."""
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


def expected_reason(fields, known: set) -> tuple[str | None, tuple | None]:
    """(reject reason, None) or (None, (ts, (o, h, l, c, volume), source)) for the
    fields canonical_symbol, ts_utc, open, high, low, close, volume, source."""
    sym, ts_text, *price_texts, volume_text, source = fields
    if sym not in known:
        return f"unknown symbol {quote(sym)}", None
    ts = timestamp_of(ts_text)
    if ts is None:
        return f"ts_utc {quote(ts_text)} is not a timestamp", None
    prices = [number_of(t) for t in price_texts]
    for name, text, value in zip(
        ("open", "high", "low", "close"), price_texts, prices, strict=True
    ):
        if value is None and text:
            return f"{name} {quote(text)} is not a finite number", None
    volume = number_of(volume_text) if volume_text else None
    if volume is None and volume_text:
        return f"volume {quote(volume_text)} is not a finite number", None
    source = (source or "").strip() or "polygon_historical"
    if not re.fullmatch(r"[a-z0-9_]{1,64}", source):
        return f"source {quote(source)} is not a source name", None
    if ts.second or ts.microsecond:
        return "ts_utc is not on a whole minute", None
    if None in prices:
        return "a price is missing", None
    o, h, lo, c = prices
    if min(prices) <= 0:
        return "a price is zero or negative", None
    if h < lo:
        return "high is below low", None
    if not lo <= o <= h:
        return "open is outside [low, high]", None
    if not lo <= c <= h:
        return "close is outside [low, high]", None
    if volume is None:
        return "volume is missing", None
    if volume < 0:
        return "volume is negative", None
    return None, (ts, (o, h, lo, c, volume), source)


def expected_ingest(numbered_records, known: set, stored: dict) -> tuple[dict, dict, int, int]:
    """(rows by key after the ingest, rejects {line: reason}, rows changed, rows
    outranked) of a file's (line, fields) records over the stored {key: (values,
    source, rank)} (a header of 8 columns): a record with a non-empty field past
    them is rejected; the first good occurrence of a key wins, later ones are
    duplicates; a stored bar is replaced by a higher rank, or an equal one with
    other content, and keeps out (outranks) a lower one."""
    rows, rejects, first_line, changed, outranked = dict(stored), {}, {}, 0, 0
    for line, fields in numbered_records:
        if any(v not in ("", None) for v in fields[8:]):  # a shifted row: rejected whole
            rejects[line] = f"{len(fields)} fields, the header has 8"
            continue
        fields = (list(fields) + [None] * 8)[:8]
        reason, parsed = expected_reason(fields, known)
        if reason is not None:
            rejects[line] = reason
            continue
        ts, values, source = parsed
        key = (fields[0], ts)
        if key in first_line:
            rejects[line] = f"duplicate of line {first_line[key]}"
            continue
        first_line[key] = line
        rank = RANK.get(source, 0)
        old = rows.get(key)
        if old is None or rank > old[2] or (rank == old[2] and (values, source) != old[:2]):
            rows[key] = (values, source, rank)
            changed += 1
        elif rank < old[2]:
            outranked += 1
    return rows, rejects, changed, outranked
