"""`tickagg ingest bars`: CSV and Parquet through the staged-ingest path
against real PostgreSQL. Good rows land, every bad row is rejected with its
physical line number and a reason, exit code 3 when anything was rejected."""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid

import pytest
from click.testing import CliRunner

from runner import db, queries
from runner.cli import cli

UTC = dt.UTC
HEADER = ["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume", "source"]


def _symbol(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def _register(dsn: str, symbol: str, calendar: str = "crypto_24x7") -> None:
    with db.connect(dsn) as conn, conn.transaction():
        queries.register_symbol(
            conn, symbol, calendar, asset_class="crypto", active=False, test_active=True
        )


def _invoke(dsn: str, *args: str):
    result = CliRunner().invoke(cli, ["--dsn", dsn, *args], catch_exceptions=False)
    return result


def _write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _ts(i: int) -> str:
    base = dt.datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    return (base + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_csv_good_and_bad_rows(dsn, tmp_path):
    sym = _symbol()
    _register(dsn, sym)
    good = [
        [sym, _ts(i), "100.0", "101.5", "99.5", "100.5", "12.5", "polygon_historical"]
        for i in range(5)
    ]
    # each bad kind; the comment is the reason we expect SQL to give
    bad = {
        "null price": [sym, _ts(10), "", "101", "99", "100", "1", ""],
        "NaN price": [sym, _ts(11), "NaN", "101", "99", "100", "1", ""],
        "infinite price": [sym, _ts(12), "100", "inf", "99", "100", "1", ""],
        "negative price": [sym, _ts(13), "-100", "101", "-101", "100", "1", ""],
        "high < low": [sym, _ts(14), "100", "99", "101", "100", "1", ""],
        "open outside": [sym, _ts(15), "105", "101", "99", "100", "1", ""],
        "negative volume": [sym, _ts(16), "100", "101", "99", "100", "-3", ""],
        "unknown symbol": [_symbol("NOPE"), _ts(17), "100", "101", "99", "100", "1", ""],
        "unparseable ts": [sym, "2024-02-30 25:99", "100", "101", "99", "100", "1", ""],
    }
    dup_first = [sym, _ts(20), "100", "101", "99", "100", "1", ""]
    dup_second = [sym, _ts(20), "100", "102", "99", "101", "2", ""]
    rows = good + list(bad.values()) + [dup_first, dup_second]
    path = tmp_path / "bars.csv"
    _write_csv(path, rows)
    # physical line numbers: header is line 1
    bad_lines = {name: 2 + len(good) + i for i, name in enumerate(bad)}
    dup_lines = {2 + len(good) + len(bad), 3 + len(good) + len(bad)}

    result = _invoke(dsn, "ingest", "bars", str(path), "--source", "polygon_historical", "--json")
    assert result.exit_code == 3, result.output
    res = json.loads(result.stdout)
    assert res["rows_total"] == len(rows)
    assert res["rows_landed"] + res["rows_unchanged"] + res["rows_rejected"] == len(rows)
    assert res["rows_landed"] >= len(good)
    rejected = {r["line_no"]: r["reason"] for r in res["rejects"]}
    for name, line in bad_lines.items():
        assert line in rejected, f"{name} (line {line}) not rejected: {res['rejects']}"
        assert rejected[line], f"{name}: empty reason"
    assert rejected.keys() & dup_lines, f"duplicate not rejected: {res['rejects']}"
    for line in range(2, 2 + len(good)):
        assert line not in rejected

    # the text output lists lines and reasons too
    text = _invoke(dsn, "ingest", "bars", str(path))
    assert text.exit_code == 3
    assert f"line {bad_lines['high < low']}:" in text.stdout
    # second load: the good rows are unchanged now, not landed again
    again = json.loads(_invoke(dsn, "ingest", "bars", str(path), "--json").stdout)
    assert again["rows_landed"] == 0
    assert again["rows_unchanged"] >= len(good)

    with db.connect(dsn) as conn:
        kept = conn.execute(
            "SELECT count(*) AS n FROM tickagg.ingest_rejects_recent WHERE line_no = %s",
            (bad_lines["negative volume"],),
        ).fetchone()["n"]
    assert kept >= 1


def test_csv_all_good_exit_0_and_case_insensitive_header(dsn, tmp_path):
    sym = _symbol()
    _register(dsn, sym)
    path = tmp_path / "ok.csv"
    header = ["Canonical_Symbol", "TS_UTC", "Open", "High", "Low", "Close", "Volume"]
    _write_csv(
        path, [[sym, _ts(i), "1.5", "1.6", "1.4", "1.55", "10"] for i in range(3)], header=header
    )
    result = _invoke(dsn, "ingest", "bars", str(path), "--source", "polygon_historical")
    assert result.exit_code == 0, result.output
    assert "3 landed" in result.stdout


def test_missing_column_is_a_usage_error(tmp_path):
    path = tmp_path / "bad_header.csv"
    _write_csv(
        path,
        [["X", _ts(0), "1", "1", "1", "1"]],
        header=["canonical_symbol", "ts_utc", "open", "high", "low", "close"],
    )
    result = CliRunner().invoke(
        cli, ["--dsn", "host=/nonexistent dbname=x", "ingest", "bars", str(path)]
    )
    assert result.exit_code == 2
    assert "volume" in result.stderr


def test_parquet_ingest(dsn, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sym = _symbol()
    _register(dsn, sym)
    base = dt.datetime(2024, 4, 2, 0, 0, tzinfo=UTC)
    n = 50
    ts = [base + dt.timedelta(minutes=i) for i in range(n)]
    close = [100.0 + i * 0.1 for i in range(n)]
    close[3] = float("nan")  # row 3 -> line_no 5 (row number + 1, 1-based rows)
    table = pa.table(
        {
            "canonical_symbol": [sym] * n,
            "ts_utc": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "open": [100.0] * n,
            "high": [110.0] * n,
            "low": [90.0] * n,
            "close": close,
            "volume": pa.array(list(range(1, n + 1)), type=pa.int64()),
        }
    )
    path = tmp_path / "bars.parquet"
    pq.write_table(table, path, row_group_size=16)
    result = _invoke(dsn, "ingest", "bars", str(path), "--source", "polygon_historical", "--json")
    assert result.exit_code == 3, result.output
    res = json.loads(result.stdout)
    assert res["rows_total"] == n
    assert res["rows_landed"] == n - 1
    assert [r["line_no"] for r in res["rejects"]] == [5]


def test_a_missing_volume_is_rejected_not_loaded_as_zero(dsn, tmp_path):
    """An empty volume field (CSV) or a null (Parquet) is a missing value, rejected
    with its line and reason like a missing price; it used to load as volume 0
    (issue 18 item 5). An explicit 0 is a volume and lands."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sym = _symbol()
    _register(dsn, sym)
    rows = [
        [sym, _ts(0), "100", "101", "99", "100", "0", ""],
        [sym, _ts(1), "100", "101", "99", "100", "", ""],
        [sym, _ts(2), "100", "101", "99", "100", "7", ""],
    ]
    path = tmp_path / "bars.csv"
    _write_csv(path, rows)
    res = json.loads(_invoke(dsn, "ingest", "bars", str(path), "--json").stdout)
    assert [(r["line_no"], r["reason"]) for r in res["rejects"]] == [(3, "volume is missing")]
    assert res["rows_landed"] == 2

    table = pa.table(
        {
            "canonical_symbol": [sym, sym],
            "ts_utc": [_ts(3), _ts(4)],
            "open": [100.0, 100.0],
            "high": [101.0, 101.0],
            "low": [99.0, 99.0],
            "close": [100.0, 100.0],
            "volume": [None, 5.0],
        }
    )
    parquet = tmp_path / "bars.parquet"
    pq.write_table(table, parquet)
    res = json.loads(_invoke(dsn, "ingest", "bars", str(parquet), "--json").stdout)
    assert [r["reason"] for r in res["rejects"]] == ["volume is missing"]
    assert res["rows_landed"] == 1

    with db.connect(dsn) as conn:
        stored = conn.execute(
            "SELECT ts_utc, volume FROM tickagg.data_bars WHERE canonical_symbol = %s ORDER BY 1",
            (sym,),
        ).fetchall()
    assert [r["volume"] for r in stored] == [0.0, 7.0, 5.0]
