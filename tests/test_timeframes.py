"""Custom timeframes: `tickagg timeframes add` makes a fixed step (65m from 5m,
2h from 1h) that every symbol gets after `sync`, materialised exactly like the
shipped ones (an independent Python oracle, across the DST change, on session-
anchored calendars) and readable by name; steps that would not nest are refused
with the reason and change nothing."""

from __future__ import annotations

import datetime as dt

import helpers as h
import oracle
import pytest
import tickagg
from oracle import diff, expected_bars
from test_oracle import SYMBOLS, build, load

CUSTOM = {"65m": dt.timedelta(minutes=65), "2h": dt.timedelta(hours=2)}


def test_custom_timeframes_roll_up_exactly_and_read_by_name(dsn, conn, monkeypatch):
    agg_start, data = build(
        41, ranges=((dt.date(2025, 3, 6), dt.date(2025, 3, 12)),), symbols=SYMBOLS[1:4]
    )
    load(conn, agg_start, data)
    for name, step, source in (("65m", "65m", "5m"), ("2h", "2h", "1h")):
        out = h.run_cli(dsn, "timeframes", "add", name, "--step", step, "--source", source)
        assert out.returncode == 0, out.stderr
        assert f"wanted by {len(data)} more symbols" in out.stdout
    h.sync(conn, agg_start)
    h.drive(dsn)

    monkeypatch.setattr(oracle, "FIXED_STEPS", {**oracle.FIXED_STEPS, **CUSTOM})
    expected = {}
    for symbol, (calendar, bars) in data.items():
        expected.update(expected_bars(symbol, calendar, bars, agg_start, timeframes=CUSTOM))
    actual = {k: v for k, v in h.derived(conn, data).items() if k[1] in CUSTOM}
    assert len(expected) > 100
    problems = diff(expected, actual)
    assert not problems, "\n".join(problems)

    listing = h.run_cli(dsn, "timeframes").stdout.splitlines()
    names = [line.split()[0] for line in listing[1:]]
    assert names == ["1m", "5m", "15m", "30m", "1h", "65m", "2h", "4h", "1d", "1w"]

    symbol = sorted(data)[0]
    frame = tickagg.read_bars(dsn, symbol, "65m")
    assert [ts.to_pydatetime() for ts in frame.index] == sorted(
        k[2] for k in expected if k[0] == symbol and k[1] == "65m"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("7m", "--step", "7m", "--source", "5m"), "does not nest"),
        (("5m2", "--step", "5m", "--source", "5m"), "does not nest"),
        (("2d", "--step", "2d", "--source", "1h"), "under a day"),
        (("10m", "--step", "10m", "--source", "1d"), "non-intraday source timeframe: 1d"),
        (("5m", "--step", "10m", "--source", "5m"), "exists already"),
        (("x;drop", "--step", "10m", "--source", "5m"), "invalid timeframe name"),
    ],
)
def test_steps_that_would_not_nest_are_refused(dsn, conn, args, message):
    before = conn.execute("SELECT * FROM tickagg.timeframes ORDER BY timeframe").fetchall()
    out = h.run_cli(dsn, "timeframes", "add", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr
    assert conn.execute("SELECT * FROM tickagg.timeframes ORDER BY timeframe").fetchall() == before
