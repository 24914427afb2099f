"""Holidays and early closes from the exchange_calendars package.

Only used by `tickagg calendars import`; the package carries its own data, so
nothing here touches the network. For a weekday that is not a session of the
exchange calendar we store a holiday; for a session whose close differs from
the exchange's regular close we store an early close (local wall-clock time).
"""

from __future__ import annotations

import datetime as dt

from .errors import TickaggError

# tickagg calendar -> exchange_calendars code
EXCHANGES = {
    "us_equity": "XNYS",  # New York Stock Exchange
    "nse_equity": "XBOM",  # exchange_calendars has no XNSE; BSE keeps the same trading days
}


def exchange_days(calendar: str, from_year: int, to_year: int) -> tuple[list[dict], list[str]]:
    """Rows {holiday_date, early_close, description} for the years, and warnings."""
    try:
        import exchange_calendars as xcals
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TickaggError(
            "calendars import needs the exchange_calendars package: pip install exchange_calendars"
        ) from exc
    code = EXCHANGES.get(calendar)
    if code is None:
        raise TickaggError(
            f"no exchange calendar known for {calendar!r}; "
            f"importable: {', '.join(sorted(EXCHANGES))}"
        )
    warnings: list[str] = []
    factory = getattr(xcals.calendar_utils, "_default_calendar_factories", {}).get(code)
    start = dt.date(from_year, 1, 1)
    end = dt.date(to_year, 12, 31)
    bound_max = getattr(factory, "bound_max", None) if factory is not None else None
    bound_max = bound_max() if callable(bound_max) else bound_max
    if bound_max is not None and pd.Timestamp(end) > pd.Timestamp(bound_max):
        last = pd.Timestamp(bound_max).date()
        warnings.append(f"{code} records holidays only up to {last}; importing up to there")
        end = last
    if end < start:
        return [], warnings
    cal = xcals.get_calendar(code, start=start.isoformat(), end=end.isoformat())
    sessions = set(cal.sessions.date)
    regular_close = cal.close_times[-1][1]  # (start, time) pairs; the current regular close
    rows: list[dict] = []
    day = start
    while day <= end:
        if day.isoweekday() <= 5 and day not in sessions:
            rows.append({"holiday_date": day, "early_close": None, "description": f"{code} closed"})
        day += dt.timedelta(days=1)
    closes = cal.schedule["close"]
    for session, close in closes.items():
        local = close.tz_convert(cal.tz).time()
        if local != regular_close:
            rows.append(
                {
                    "holiday_date": session.date(),
                    "early_close": local,
                    "description": f"{code} closes at {local:%H:%M}",
                }
            )
    rows.sort(key=lambda r: r["holiday_date"])
    return rows, warnings
