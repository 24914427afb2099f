"""Reading bars out: `tickagg bars` (table, CSV, JSON, Parquet) and
tickagg.read_bars return exactly the rows of the ohlcv_* views and data_bars,
across a DST change, for one and several symbols, with indicators as columns;
bad arguments exit 2 naming what is valid."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import helpers as h
import pyarrow.parquet as pq
import pytest
import tickagg
from oracle import Bar1m
from test_oracle import SYMBOLS, build, load

UTC = dt.UTC
BAR_FIELDS = (
    "canonical_symbol",
    "bucket",
    "bucket_end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "source_candles",
    "expected_candles",
    "quality_score",
    "is_partial",
    "is_filled",
)
# forex (DST moves its sessions), crypto, us_equity; the US switched to DST on 2025-03-09
READ_SYMBOLS = (SYMBOLS[0], SYMBOLS[2], SYMBOLS[3])
WINDOW = (dt.datetime(2025, 3, 7, tzinfo=UTC), dt.datetime(2025, 3, 11, tzinfo=UTC))


@pytest.fixture
def loaded(conn, dsn):
    agg_start, data = build(
        23, ranges=((dt.date(2025, 3, 6), dt.date(2025, 3, 12)),), symbols=READ_SYMBOLS
    )
    load(conn, agg_start, data)
    h.drive(dsn)
    return sorted(data)


def view_rows(conn, view: str, symbols, start, end) -> list[dict]:
    return conn.execute(
        f"SELECT {', '.join(BAR_FIELDS[:-1])}, false AS is_filled"  # noqa: S608 - fixed names
        f" FROM tickagg.{view}"
        " WHERE canonical_symbol = ANY(%s) AND bucket >= %s AND bucket < %s AND bucket_end <= now()"
        " ORDER BY canonical_symbol, bucket",
        (list(symbols), start, end),
    ).fetchall()


def frame_rows(frame) -> list[dict]:
    """A pandas frame's rows as the view's dicts (NaN/NA as None)."""
    flat = frame.reset_index().astype(object)
    rows = flat.where(flat.notna(), None).to_dict("records")
    for row in rows:
        for key in ("bucket", "bucket_end"):
            row[key] = row[key].to_pydatetime()
    return rows


def minute_rows(conn, symbol: str, start, end) -> list[dict]:
    return conn.execute(
        """
        SELECT canonical_symbol, ts_utc AS bucket, open, high, low, close, volume
        FROM tickagg.data_bars
        WHERE canonical_symbol = %s AND ts_utc >= %s AND ts_utc < %s ORDER BY ts_utc
        """,
        (symbol, start, end),
    ).fetchall()


def typed(row: dict) -> dict:
    """A CSV row with the view's types."""
    out: dict = {}
    for key, text in row.items():
        if text == "":
            out[key] = None
        elif key in ("bucket", "bucket_end"):
            out[key] = dt.datetime.fromisoformat(text)
        elif key in ("trade_count", "source_candles", "expected_candles", "quality_score"):
            out[key] = int(text)
        elif key in ("is_partial", "is_filled"):
            out[key] = text == "True"
        elif key == "canonical_symbol":
            out[key] = text
        else:
            out[key] = float(text)
    return out


def test_csv_json_and_parquet_equal_the_views_for_every_timeframe(dsn, conn, loaded, tmp_path):
    for timeframe, view in (("5m", "ohlcv_5min"), ("1h", "ohlcv_1hour"), ("1d", "ohlcv_1day")):
        expected = view_rows(conn, view, loaded, *WINDOW)
        assert expected, f"no {timeframe} bars in the window"
        args = [f"--symbol={s}" for s in loaded]
        window = [
            "--timeframe",
            timeframe,
            "--from",
            WINDOW[0].isoformat(),
            "--to",
            WINDOW[1].isoformat(),
        ]

        out = h.run_cli(dsn, "bars", *args, *window, "--format", "csv")
        assert out.returncode == 0, out.stderr
        assert [typed(r) for r in csv.DictReader(io.StringIO(out.stdout))] == expected

        out = h.run_cli(dsn, "bars", *args, *window, "--format", "json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert [typed({k: "" if v is None else str(v) for k, v in r.items()}) for r in got] == (
            expected
        )

        target = tmp_path / f"{timeframe}.parquet"
        out = h.run_cli(dsn, "bars", *args, *window, "--format", "parquet", "--output", str(target))
        assert out.returncode == 0, out.stderr
        assert f"{len(expected)} bars" in out.stdout
        assert pq.read_table(target).to_pylist() == expected


def test_one_minute_bars_come_from_data_bars(dsn, conn, loaded):
    symbol = loaded[0]
    expected = minute_rows(conn, symbol, *WINDOW)
    out = h.run_cli(
        dsn, "bars", "--symbol", symbol, "--timeframe", "1m",
        "--from", WINDOW[0].isoformat(), "--to", WINDOW[1].isoformat(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = [typed(r) for r in csv.DictReader(io.StringIO(out.stdout))]  # not a terminal: CSV
    assert [{k: r[k] for k in expected[0]} for r in got] == expected
    assert not any(r["is_filled"] for r in got)
    assert all(r["bucket_end"] - r["bucket"] == dt.timedelta(minutes=1) for r in got)

    table = h.run_cli(
        dsn, "bars", "--symbol", symbol, "--timeframe", "1m", "--format", "table",
        "--from", WINDOW[0].isoformat(), "--to", WINDOW[1].isoformat(),
    )  # fmt: skip
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "canonical_symbol", "bucket", "open", "high", "low", "close", "volume",
        "expected_candles", "source_candles", "is_partial", "is_filled",
    ]  # fmt: skip
    assert len(lines) == 1 + len(expected) and f"{len(expected)} bars" in table.stderr
    first = expected[0]
    assert lines[1].split()[:3] == [
        symbol,
        f"{first['bucket']:%Y-%m-%d}",
        f"{first['bucket']:%H:%M}",
    ]


def test_read_bars_pandas_and_polars(dsn, conn, loaded):
    symbol = loaded[0]
    expected = view_rows(conn, "ohlcv_15min", [symbol], *WINDOW)
    frame = tickagg.read_bars(dsn, symbol, "15m", start=WINDOW[0], end=WINDOW[1].isoformat())
    assert str(frame.index.dtype).startswith("datetime64") and str(frame.index.tz) == "UTC"
    assert all(str(frame[c].dtype) == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert frame_rows(frame) == [
        {k: v for k, v in r.items() if k != "canonical_symbol"} for r in expected
    ]

    several = tickagg.read_bars(dsn, loaded, "15m", start=WINDOW[0], end=WINDOW[1])
    assert several.index.names == ["canonical_symbol", "bucket"]
    assert frame_rows(several) == view_rows(conn, "ohlcv_15min", loaded, *WINDOW)

    with h.connect(dsn) as own:
        polars_frame = tickagg.read_bars(own, loaded, "15m", WINDOW[0], WINDOW[1], engine="polars")
    assert polars_frame["close"].to_list() == several["close"].tolist()
    assert polars_frame["bucket"].dtype.time_zone == "UTC"


def test_indicators_are_columns_equal_to_bar_indicators(dsn, conn, loaded):
    symbol = loaded[1]
    stored = {
        r["ts_utc"]: r["indicators"]
        for r in conn.execute(
            "SELECT ts_utc, indicators FROM tickagg.bar_indicators"
            " WHERE canonical_symbol = %s AND timeframe = '5m'",
            (symbol,),
        ).fetchall()
    }
    assert stored, "the indicators task computed nothing"
    frame = tickagg.read_bars(dsn, symbol, "5m", indicators=["rsi", "macd"])
    assert {"rsi", "macd"} <= set(frame.columns)
    for ts, row in frame.iterrows():
        for name in ("rsi", "macd"):
            value = stored[ts.to_pydatetime()][name]
            assert (row[name] != row[name] and value is None) or row[name] == value

    out = h.run_cli(dsn, "bars", "--symbol", symbol, "--timeframe", "5m", "--indicators", "rsi")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len(frame) and list(rows[0])[-1] == "rsi"


def test_the_open_bucket_only_with_include_partial(dsn, conn, loaded):
    symbol = "BTC"
    now_minute = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    h.insert_bars(conn, symbol, {now_minute: Bar1m(100.0, 101.0, 99.0, 100.5, 3.0)})
    since = now_minute - dt.timedelta(days=1)
    args = ("bars", "--symbol", symbol, "--timeframe", "1d", "--from", since.isoformat())
    closed = h.run_cli(dsn, *args)
    assert closed.returncode == 0, closed.stderr
    assert list(csv.DictReader(io.StringIO(closed.stdout))) == []
    with_open = h.run_cli(dsn, *args, "--include-partial")
    rows = list(csv.DictReader(io.StringIO(with_open.stdout)))
    assert [(r["bucket"], r["close"], r["is_partial"]) for r in rows] == [
        (now_minute.replace(hour=0, minute=0).isoformat(), "100.5", "True")
    ]


def test_times_in_the_calendars_zone(dsn, conn, loaded):
    out = h.run_cli(
        dsn, "bars", "--symbol", "SPY", "--timeframe", "1d", "--tz", "calendar",
        "--from", WINDOW[0].isoformat(), "--to", WINDOW[1].isoformat(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    # the US equity day opens 09:30 New York time on both sides of the DST change
    assert rows and all(r["bucket"][11:] in ("09:30:00-05:00", "09:30:00-04:00") for r in rows)
    assert {r["bucket"][-6:] for r in rows} == {"-05:00", "-04:00"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbol", "NOPE", "--timeframe", "5m"), "unknown symbol: NOPE"),
        (("--symbol", "BTC", "--timeframe", "2m"), "unknown timeframe: 2m (Use one of: 1m, 5m"),
        (
            ("--symbol", "BTC", "--timeframe", "5m", "--indicators", "rsi,nope"),
            "unknown indicator: nope",
        ),
        (("--symbol", "BTC", "--timeframe", "5m", "--tz", "Mars/Olympus"), "unknown time zone"),
    ],
)
def test_bad_arguments_exit_2_naming_what_is_valid(dsn, loaded, args, message):
    out = h.run_cli(dsn, "bars", *args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert message in out.stderr
    if "indicator" in message:
        assert "rsi" in out.stderr.split("nope", 1)[1]


def test_the_runner_role_reads_every_view_and_command(dsn, conn, role_dsn, loaded):
    """The grants promise SELECT on the ohlcv_* views to the runner role; through
    the inlined realtime_bars function its queries were checked against the
    tables themselves and failed (permission denied for derived_data_bars)."""
    runner = role_dsn()
    with h.connect(runner) as as_runner:
        for view in ("ohlcv", "ohlcv_5min", "ohlcv_1day", "ohlcv_1week"):
            query = f"SELECT count(*) AS n FROM tickagg.{view}"  # noqa: S608 - fixed names
            assert as_runner.execute(query).fetchone() == conn.execute(query).fetchone()
    out = h.run_cli(runner, "bars", "--symbol", loaded[0], "--timeframe", "4h")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) > 1


def us_equity_slots(step: dt.timedelta, start: dt.datetime, end: dt.datetime):
    """Buckets of the US equity session (09:30-16:00 New York, weekdays; no
    holidays in the window), anchored at the open and cut at the close."""
    new_york = ZoneInfo("America/New_York")
    day = start.astimezone(new_york).date() - dt.timedelta(days=1)
    while day <= end.date():
        if day.weekday() < 5:
            opens = dt.datetime.combine(day, dt.time(9, 30), new_york)
            closes = dt.datetime.combine(day, dt.time(16, 0), new_york)
            t = opens
            while t < closes:
                yield t.astimezone(UTC), min(t + step, closes).astimezone(UTC)
                t += step
        day += dt.timedelta(days=1)


def crypto_slots(step: dt.timedelta, start: dt.datetime, end: dt.datetime):
    t = start
    while t < end:
        yield t, t + step
        t += step


def expected_filled(conn, symbol, timeframe, view, slots, fill):
    """Every bar of the view in the window, and every slot of open market time
    without one as a filled row (flat at the last close before it with zero
    volume for prev, empty for null). Bars outside the sessions still come."""
    bars = {r["bucket"]: r for r in view_rows(conn, view, [symbol], *WINDOW)}
    before = conn.execute(
        f"SELECT close FROM tickagg.{view}"  # noqa: S608 - fixed names
        " WHERE canonical_symbol = %s AND bucket < %s ORDER BY bucket DESC LIMIT 1",
        (symbol, WINDOW[0]),
    ).fetchone()
    last_close = before["close"] if before else None
    missing = {
        start: end
        for start, end in slots
        if WINDOW[0] <= start and end <= WINDOW[1] and start not in bars
    }
    rows = []
    for start in sorted(set(bars) | set(missing)):
        if start in bars:
            rows.append(bars[start])
            last_close = bars[start]["close"]
            continue
        price = last_close if fill == "prev" else None
        rows.append(
            {
                "canonical_symbol": symbol, "bucket": start, "bucket_end": missing[start],
                "open": price, "high": price, "low": price, "close": price,
                "volume": 0.0 if fill == "prev" else None, "vwap": None, "trade_count": None,
                "source_candles": None, "expected_candles": None, "quality_score": None,
                "is_partial": None, "is_filled": True,
            }
        )  # fmt: skip
    return rows


@pytest.mark.parametrize("fill", ["prev", "null"])
def test_fill_gives_every_bucket_of_open_market_time(dsn, conn, loaded, fill):
    """Whole buckets removed (and the opening of the window), across the DST
    change: each comes back once, filled, and closed market time never does."""
    holes = [
        ("BTC", dt.datetime(2025, 3, 8, 10, tzinfo=UTC), dt.timedelta(hours=3)),
        ("BTC", WINDOW[0], dt.timedelta(hours=2)),
        ("SPY", dt.datetime(2025, 3, 10, 14, 0, tzinfo=UTC), dt.timedelta(hours=1)),
    ]
    for symbol, start, length in holes:
        conn.execute(
            "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc >= %s"
            " AND ts_utc < %s",
            (symbol, start, start + length),
        )
    h.drive(dsn)
    cases = (
        ("BTC", "1h", "ohlcv_1hour", crypto_slots(dt.timedelta(hours=1), *WINDOW)),
        ("SPY", "30m", "ohlcv_30min", us_equity_slots(dt.timedelta(minutes=30), *WINDOW)),
    )
    for symbol, timeframe, view, slots in cases:
        expected = expected_filled(conn, symbol, timeframe, view, list(slots), fill)
        assert sum(r["is_filled"] for r in expected) >= 2, "nothing to fill: the test is vacuous"
        frame = tickagg.read_bars(
            dsn, [symbol], timeframe, start=WINDOW[0], end=WINDOW[1], fill=fill
        )
        assert frame_rows(frame) == expected, (symbol, timeframe)

        out = h.run_cli(
            dsn, "bars", "--symbol", symbol, "--timeframe", timeframe, "--fill", fill,
            "--from", WINDOW[0].isoformat(), "--to", WINDOW[1].isoformat(),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert [typed(r) for r in csv.DictReader(io.StringIO(out.stdout))] == expected


@pytest.mark.parametrize("suffix", [".png", ".html", ".svg"])
def test_chart_draws_the_bars_into_a_file(dsn, loaded, tmp_path, suffix):
    target = tmp_path / f"chart{suffix}"
    out = h.run_cli(
        dsn, "chart", "--symbol", "BTC", "--timeframe", "1h", "--indicators", "sma_21,rsi",
        "--from", WINDOW[0].isoformat(), "--to", WINDOW[1].isoformat(), "--output", str(target),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    expected = tickagg.read_bars(dsn, "BTC", "1h", WINDOW[0], WINDOW[1], include_open=True)
    assert f"{len(expected)} bars drawn to {target}" in out.stdout
    data = target.read_bytes()
    assert len(data) > 10_000
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        # one body rectangle and one wick per bar at least, and the indicator legend
        assert data.count(b"<path") > 2 * len(expected) and b"rsi" in data


def test_chart_refuses_an_unknown_format_and_an_empty_window(dsn, loaded, tmp_path):
    out = h.run_cli(dsn, "chart", "--symbol", "BTC", "--timeframe", "1h", "--output", "x.gif")
    assert out.returncode == 2 and "use a file ending in .png, .svg, .html" in out.stderr
    out = h.run_cli(
        dsn, "chart", "--symbol", "BTC", "--timeframe", "1h", "--from", "2001-01-01",
        "--to", "2001-02-01", "--output", str(tmp_path / "c.png"),
    )  # fmt: skip
    assert out.returncode == 1 and "no 1h bars of BTC" in out.stderr
