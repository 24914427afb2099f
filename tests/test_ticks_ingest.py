"""`tickagg ingest ticks FILE`: CSV and Parquet through the real CLI; bad ticks
rejected with line and reason (exit 3), good ones land; a chunk that does not
COPY is re-read row by row without losing its good rows."""

from __future__ import annotations

import datetime as dt
import json

import helpers as h
import psycopg
import pytest

UTC = dt.UTC


@pytest.fixture
def tick_symbols(conn):
    now = conn.execute("SELECT now() AS n").fetchone()["n"].astimezone(UTC)
    for sym, kind in (("TBTC", "last"), ("TEUR", "mid")):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks',"
            " p_price_kind => %s)",
            (sym, kind),
        )
    h.sync(conn, now - dt.timedelta(hours=2))
    return now


def ts(now: dt.datetime, minutes: float) -> str:
    return (now - dt.timedelta(minutes=minutes)).isoformat()


def test_clean_csv_lands_every_tick(dsn, conn, tmp_path, tick_symbols):
    now = tick_symbols
    lines = ["canonical_symbol,ts_utc,bid,ask,last,size"]
    for i in range(500):
        lines.append(f"TBTC,{ts(now, 60 - i / 10)},,,{100 + i % 7},{i % 3}")
        lines.append(f"TEUR,{ts(now, 60 - i / 10)},1.1,1.{1 + i % 2},,")
    lines.append(lines[1])  # identical to line 2: a second trade (its occurrence 2)
    f = tmp_path / "ticks.csv"
    f.write_text("\n".join(lines) + "\n")
    p = h.run_cli(dsn, "ingest", "ticks", str(f), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert (res["rows_total"], res["rows_landed"], res["rows_unchanged"]) == (1001, 1001, 0)
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 1001
    # the file again: every row a duplicate
    p = h.run_cli(dsn, "ingest", "ticks", str(f), "--json")
    assert (json.loads(p.stdout)["rows_landed"], json.loads(p.stdout)["rows_unchanged"]) == (
        0,
        1001,
    )
    # arrival order is file order: ticks with equal timestamps keep it
    seqs = conn.execute(
        "SELECT canonical_symbol, tick_seq FROM tickagg.ticks ORDER BY tick_seq"
    ).fetchall()
    assert [r["canonical_symbol"] for r in seqs[:4]] == ["TBTC", "TEUR", "TBTC", "TEUR"]


def test_bad_ticks_rejected_with_line_and_reason(dsn, conn, tmp_path, tick_symbols):
    now = tick_symbols
    rows = [
        ("canonical_symbol,ts_utc,bid,ask,last,size", None),
        (f"TBTC,{ts(now, 10)},,,100,1", None),
        (f"TBTC,{ts(now, 10)},,,abc,1", "last 'abc' is not a finite number"),
        (f"TEUR,{ts(now, 9)},1.2,1.1,,", "bid 1.2 is above ask 1.1"),
        (f"TBTC,{ts(now, 9)},,,NaN,1", "not a finite number"),
        ("TBTC,yesterday-ish,,,100,1", "is not a timestamp"),
        (f"TBTC,{ts(now, 8)},,,100,1,extra", "expected 6 fields, got 7"),
        (f"NOPE,{ts(now, 8)},,,100,1", "unknown symbol 'NOPE'"),
        (f"TBTC,{ts(now, -120)},,,100,1", "in the future"),
        (f"TBTC,{ts(now, 8)},,,100,-1", "size -1 is not a non-negative finite number"),
        (f"TEUR,{ts(now, 7)},1.1,1.2,,", None),
    ]
    f = tmp_path / "bad.csv"
    f.write_text("\n".join(r for r, _ in rows) + "\n")
    p = h.run_cli(dsn, "ingest", "ticks", str(f))
    assert p.returncode == 3, p.stdout + p.stderr[-2000:]
    got = {
        r["line_no"]: r["reason"]
        for r in conn.execute("SELECT line_no, reason FROM tickagg.tick_rejects_recent")
    }
    for line_no, (_, reason) in enumerate(rows, start=1):
        if line_no == 1:
            continue
        if reason is None:
            assert line_no not in got
        else:
            assert reason in got.get(line_no, ""), (line_no, got.get(line_no))
            assert f"line {line_no}:" in p.stdout
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 2


def test_parquet_equals_csv(dsn, conn, tmp_path, tick_symbols):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    now = tick_symbols
    times = [now - dt.timedelta(minutes=30, microseconds=137 * i) for i in range(300)]
    table = pa.table(
        {
            "canonical_symbol": ["TBTC"] * 300,
            "ts_utc": pa.array(times, pa.timestamp("us", tz="UTC")),
            "last": [100.0 + i % 5 for i in range(300)],
            "size": [float(i % 4) if i % 10 else None for i in range(300)],
        }
    )
    f = tmp_path / "ticks.parquet"
    pq.write_table(table, f)
    p = h.run_cli(dsn, "ingest", "ticks", str(f), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    got = conn.execute(
        "SELECT ts_utc, last_price, size FROM tickagg.ticks ORDER BY ts_utc, tick_seq"
    ).fetchall()
    want = sorted(zip(times, table["last"].to_pylist(), table["size"].to_pylist(), strict=True))
    assert [(r["ts_utc"], r["last_price"], r["size"]) for r in got] == want


def test_unreadable_header_exits_2(dsn, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("symbol,when,price\nA,B,C\n")
    p = h.run_cli(dsn, "ingest", "ticks", str(f))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "unknown column" in p.stderr + p.stdout


def test_chunks_keep_line_numbers_and_a_bad_chunk_keeps_its_good_rows(
    dsn, conn, tmp_path, tick_symbols, monkeypatch
):
    """Small chunks: rejects in several chunks (one of which does not COPY) carry
    their physical line numbers; every good tick lands."""
    from runner import db, ingest_ticks

    now = tick_symbols
    monkeypatch.setattr(ingest_ticks, "CHUNK_BYTES", 2048)
    lines = ["canonical_symbol,ts_utc,bid,ask,last,size"]
    bad = {}
    for i in range(400):
        line_no = len(lines) + 1
        if i % 97 == 13:
            lines.append(f"TBTC,{ts(now, 50 - i / 10)},,,oops,1")  # does not COPY
            bad[line_no] = "last 'oops' is not a finite number"
        elif i % 89 == 7:
            lines.append(f"TEUR,{ts(now, 50 - i / 10)},2,1,,")  # COPYs, then rejected
            bad[line_no] = "bid 2 is above ask 1"
        else:
            lines.append(f"TBTC,{ts(now, 50 - i / 10)},,,{100 + i},1")
    f = tmp_path / "chunks.csv"
    f.write_text("\n".join(lines) + "\n")
    with db.make_pool(dsn, max_size=1) as pool:
        res = ingest_ticks.ingest_ticks_file(pool, str(f))
    assert res["rows_total"] == 400 and res["rows_rejected"] == len(bad)
    got = {
        r["line_no"]: r["reason"]
        for r in conn.execute(
            "SELECT line_no, reason FROM tickagg.tick_rejects WHERE batch_id = %s",
            (res["batch_id"],),
        )
    }
    assert got.keys() == bad.keys()
    for line_no, reason in bad.items():
        assert reason in got[line_no], (line_no, got[line_no])
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 400 - len(bad)
    batch = conn.execute(
        "SELECT * FROM tickagg.ingest_batches WHERE batch_id = %s", (res["batch_id"],)
    ).fetchone()
    assert (batch["rows_total"], batch["rows_rejected"]) == (400, len(bad))


def test_runner_role_uses_the_sql_path_and_views(role_dsn, conn, tick_symbols):
    """tickagg_runner writes no table, yet ingest_ticks (SECURITY DEFINER) lands
    ticks, creates a missing day and records rejects it can read back."""
    now = tick_symbols
    with h.connect(role_dsn()) as rc:
        res = rc.execute(
            "SELECT tickagg.ingest_ticks(ARRAY['TBTC', 'TBTC'], ARRAY[%s, %s]::timestamptz[],"
            " p_last_price => ARRAY[10, -1]::float8[]) AS r",
            (now - dt.timedelta(days=6), now - dt.timedelta(minutes=1)),
        ).fetchone()["r"]
        assert (res["rows_landed"], res["rows_rejected"]) == (1, 1)
        assert (
            rc.execute("SELECT count(*) AS n FROM tickagg.tick_rejects_recent").fetchone()["n"] == 1
        )
        assert (
            rc.execute("SELECT partitions FROM tickagg.ticks_storage").fetchone()["partitions"] >= 1
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rc.execute("INSERT INTO tickagg.ticks (canonical_symbol, ts_utc, last_price)"
                       " VALUES ('TBTC', now(), 1)")  # fmt: skip
