"""A tick's identity (issue 23 item 1, DESIGN's ticks rule): the vendor's trade
id when the file or call has one, else its occurrence among identical rows of
the same file (or call). Distinct trades that share a millisecond, price and
size all count; re-ingesting the same file lands nothing twice."""

from __future__ import annotations

import datetime as dt
import json

import helpers as h
import pytest
from tick_oracle import Tick, expected_1m

from runner import queries

UTC = dt.UTC


@pytest.fixture
def now(conn) -> dt.datetime:
    at = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    for sym, kind in (("TBTC", "last"), ("TEUR", "mid")):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks',"
            " p_price_kind => %s)",
            (sym, kind),
        )
    h.sync(conn, at - dt.timedelta(hours=2))
    return at


def minute_bar(conn, symbol: str, minute: dt.datetime) -> dict:
    return conn.execute(
        "SELECT * FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc = %s",
        (symbol, minute),
    ).fetchone()


def ingest_file(dsn, path) -> dict:
    p = h.run_cli(dsn, "ingest", "ticks", str(path), "--json")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(p.stdout)


def test_identical_trades_of_a_file_all_count_and_a_reingest_lands_none(dsn, conn, tmp_path, now):
    """Three trades at the same millisecond, price and size (a taker filling three
    makers), and two identical quotes: every one lands, the minute's volume is the
    sum of all sizes; the same file again lands nothing."""
    minute = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    at = (minute + dt.timedelta(seconds=12, milliseconds=345)).isoformat()
    rows = [
        f"TBTC,{(minute + dt.timedelta(seconds=1)).isoformat()},,,100,5",
        f"TBTC,{at},,,101,7",
        f"TBTC,{at},,,101,7",
        f"TBTC,{at},,,101,7",
        f"TBTC,{(minute + dt.timedelta(seconds=50)).isoformat()},,,99,2",
        f"TEUR,{at},1.1,1.2,,",
        f"TEUR,{at},1.1,1.2,,",
    ]
    f = tmp_path / "trades.csv"
    f.write_text("canonical_symbol,ts_utc,bid,ask,last,size\n" + "\n".join(rows) + "\n")
    res = ingest_file(dsn, f)
    assert (res["rows_landed"], res["rows_unchanged"]) == (7, 0), res
    h.drive(dsn)
    bar = minute_bar(conn, "TBTC", minute)
    assert (bar["volume"], bar["trade_count"]) == (5 + 3 * 7 + 2, 5), bar
    assert minute_bar(conn, "TEUR", minute)["trade_count"] == 2

    again = ingest_file(dsn, f)
    assert (again["rows_landed"], again["rows_unchanged"]) == (0, 7), again
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 7


def test_trade_ids_csv_and_parquet(dsn, conn, tmp_path, now):
    """With a trade_id column, distinct ids land even with identical content; a
    repeated id at the same instant is the same trade (first one wins) whatever
    its other fields; the Parquet file of the same rows lands nothing new."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    minute = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=20)
    at = minute + dt.timedelta(seconds=3)
    trades = [("a1", 101.0, 7.0), ("a2", 101.0, 7.0), ("a3", 101.0, 7.0), ("a2", 101.0, 9.0)]
    f = tmp_path / "ids.csv"
    f.write_text(
        "canonical_symbol,ts_utc,last,size,trade_id\n"
        + "".join(f"TBTC,{at.isoformat()},{p},{s},{i}\n" for i, p, s in trades)
    )
    res = ingest_file(dsn, f)
    assert (res["rows_landed"], res["rows_unchanged"]) == (3, 1), res
    stored = conn.execute("SELECT trade_id, size FROM tickagg.ticks ORDER BY trade_id").fetchall()
    assert [(r["trade_id"], r["size"]) for r in stored] == [("a1", 7), ("a2", 7), ("a3", 7)]

    table = pa.table(
        {
            "canonical_symbol": ["TBTC"] * 4,
            "ts_utc": pa.array([at] * 4, pa.timestamp("us", tz="UTC")),
            "last": [p for _, p, _ in trades],
            "size": [s for _, _, s in trades],
            "trade_id": [i for i, _, _ in trades],
        }
    )
    pf = tmp_path / "ids.parquet"
    pq.write_table(table, pf)
    again = ingest_file(dsn, pf)
    assert (again["rows_landed"], again["rows_unchanged"]) == (0, 4), again
    h.drive(dsn)
    assert minute_bar(conn, "TBTC", minute)["volume"] == 21


def test_identical_rows_across_chunks_of_a_file(dsn, conn, tmp_path, now, monkeypatch):
    """Small chunks: runs of identical trades cut by chunk boundaries still count
    once per row of the file, and the file again lands nothing."""
    from runner import db, ingest_ticks

    monkeypatch.setattr(ingest_ticks, "CHUNK_BYTES", 512)
    start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=40)
    lines, arrivals = [], []
    for i in range(300):
        at = start + dt.timedelta(seconds=i // 6)
        lines.append(f"TBTC,{at.isoformat()},,,{100 + (i // 6) % 3},1")
        arrivals.append(Tick("TBTC", at, last=float(100 + (i // 6) % 3), size=1.0))
    f = tmp_path / "runs.csv"
    f.write_text("canonical_symbol,ts_utc,bid,ask,last,size\n" + "\n".join(lines) + "\n")
    with db.make_pool(dsn, max_size=1) as pool:
        res = ingest_ticks.ingest_ticks_file(pool, str(f))
        assert res["rows_landed"] == 300, res
        again = ingest_ticks.ingest_ticks_file(pool, str(f))
        assert (again["rows_landed"], again["rows_unchanged"]) == (0, 300), again
    h.drive(dsn)
    exp = expected_1m(arrivals, {"TBTC": "last"})
    for (sym, minute), (bar, _) in exp.items():
        got = minute_bar(conn, sym, minute)
        assert (got["volume"], got["trade_count"]) == (bar.volume, bar.trade_count), minute


def test_the_sql_path_and_python_api(conn, now):
    """ingest_ticks (queries.ingest_ticks): identical rows of one call are distinct
    trades; the same call again lands nothing; trade ids as on the file path."""
    at = now - dt.timedelta(minutes=5)
    ticks = [("TBTC", at, None, None, 101.0, 7.0)] * 3
    assert queries.ingest_ticks(conn, ticks)["rows_landed"] == 3
    assert queries.ingest_ticks(conn, ticks)["rows_landed"] == 0
    with_ids = [("TBTC", at, None, None, 101.0, 7.0, f"x{i % 2}") for i in range(3)]
    res = queries.ingest_ticks(conn, with_ids)
    assert (res["rows_landed"], res["rows_unchanged"]) == (2, 1), res
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 5


def test_an_overlong_trade_id_is_rejected_with_its_line(dsn, conn, tmp_path, now):
    """A trade id is part of the unique key: one of 10 kB would fail the whole
    chunk in the index; it is rejected with its line, the other rows land."""
    at = (now - dt.timedelta(minutes=3)).isoformat()
    f = tmp_path / "long.csv"
    f.write_text(
        "canonical_symbol,ts_utc,last,size,trade_id\n"
        f"TBTC,{at},101,1,ok1\nTBTC,{at},101,1,{'x' * 10_000}\nTBTC,{at},101,1,ok2\n"
    )
    p = h.run_cli(dsn, "ingest", "ticks", str(f), "--json")
    assert p.returncode == 3, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert (res["rows_landed"], res["rows_rejected"]) == (2, 1), res
    (reject,) = conn.execute("SELECT line_no, reason FROM tickagg.tick_rejects").fetchall()
    assert reject["line_no"] == 3 and "trade_id is longer than 256 bytes" in reject["reason"]
    res = queries.ingest_ticks(conn, [("TBTC", now, None, None, 101.0, 1.0, "y" * 10_000)])
    assert (res["rows_landed"], res["rows_rejected"]) == (0, 1), res
