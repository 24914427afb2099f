"""Files and fields the CSV and Parquet readers could not take (issue 23 items 13
and 14), through the real `tickagg ingest bars|ticks`: a file that cannot be read
at all is one `error:` line naming it (exit 2, never a traceback); a line that
cannot be read (not UTF-8, a NUL byte, a field over csv's limit, a quote never
closed) is rejected with its line and reason, and the good rows before and after
it land (exit 3); a second 60 or an hour 24 is rejected, not taken for the next
minute; every finite float8 (1e308, 3-digit exponents) is a number; a tick row
with a trailing extra field is rejected with its line."""

from __future__ import annotations

import datetime as dt
import json
import random

import helpers as h
import pytest

UTC = dt.UTC
BARS_HEADER = "canonical_symbol,ts_utc,open,high,low,close,volume"
TICKS_HEADER = "canonical_symbol,ts_utc,bid,ask,last,size"
T0 = dt.datetime(2025, 9, 1, tzinfo=UTC)


def bar(i: int, volume: str = "5", stamp: str | None = None) -> str:
    return f"UB,{stamp or f'{T0 + dt.timedelta(minutes=i):%Y-%m-%dT%H:%M:%SZ}'},10,12,9,11,{volume}"


@pytest.fixture
def bar_symbol(conn):
    h.register(conn, "UB", "crypto_24x7")
    return conn


@pytest.fixture
def tick_now(conn):
    now = conn.execute("SELECT date_trunc('minute', now()) AS n").fetchone()["n"].astimezone(UTC)
    conn.execute("SELECT tickagg.register_symbol('UT', 'crypto_24x7', p_source_kind => 'ticks')")
    h.sync(conn, now - dt.timedelta(hours=3))
    return now - dt.timedelta(hours=2)


def tick(t0: dt.datetime, i: int, last: str = "100.5", size: str = "2", stamp=None) -> str:
    return f"UT,{stamp or (t0 + dt.timedelta(seconds=i)).isoformat()},,,{last},{size}"


def ingest(dsn: str, kind: str, path) -> tuple[int, dict | None, str]:
    p = h.run_cli(dsn, "ingest", kind, str(path), "--json", timeout=120)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


def landed_bars(conn) -> set[dt.datetime]:
    rows = conn.execute("SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = 'UB'")
    return {r["ts_utc"] for r in rows}


def bar_rejects(conn, batch_id: int) -> dict[int, str]:
    rows = conn.execute(
        "SELECT line_no, reason FROM tickagg.ingest_rejects WHERE batch_id = %s", (batch_id,)
    )
    return {r["line_no"]: r["reason"] for r in rows}


def tick_rejects(conn, batch_id: int) -> dict[int, str]:
    rows = conn.execute(
        "SELECT line_no, reason FROM tickagg.tick_rejects WHERE batch_id = %s", (batch_id,)
    )
    return {r["line_no"]: r["reason"] for r in rows}


UNREADABLE_LINES = {
    # name: (the bad line's bytes, what its reason says)
    "not_utf8": (b"UB,\xff\xfe2025-09-01T00:01:00Z,10,12,9,11,5", "not UTF-8 text"),
    "nul": (b"UB,2025-09-01T00:01:00Z,10,12,9,11,5\x00", "a NUL byte"),
    # (a bar chunk COPYs a long field, and ingest_staged_bars judges it; ticks do not)
    "huge_field": (b"UB,2025-09-01T00:01:00Z," + b"1" * 200_000 + b",12,9,11,5",
                   "longer than 131,072 characters|is not a finite number"),
    "open_quote": (b'UB,"2025-09-01T00:01:00Z,10,12,9,11,5', "quoted field is never closed"),
}  # fmt: skip


def says(reason: str, expected: str) -> bool:
    return any(e in reason for e in expected.split("|"))


@pytest.mark.parametrize("case", sorted(UNREADABLE_LINES))
def test_an_unreadable_bar_line_is_rejected_and_its_neighbours_land(
    dsn, bar_symbol, tmp_path, case
):
    conn = bar_symbol
    line, reason = UNREADABLE_LINES[case]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(
        f"{BARS_HEADER}\n{bar(0)}\n".encode() + line + f"\n{bar(2)}\n{bar(3)}\n".encode()
    )
    code, res, err = ingest(dsn, "bars", path)
    assert code == 3, err
    assert (res["rows_total"], res["rows_landed"], res["rows_rejected"]) == (4, 3, 1), res
    assert landed_bars(conn) == {T0, T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=3)}
    rejects = bar_rejects(conn, res["batch_id"])
    assert list(rejects) == [3] and says(rejects[3], reason), rejects[3][:300]
    assert [r["line_no"] for r in res["rejects"]] == [3]
    # the batch's totals count the line, and the reject keeps the line's text, cut short
    batch = conn.execute(
        "SELECT rows_total, rows_rejected FROM tickagg.ingest_batches WHERE batch_id = %s",
        (res["batch_id"],),
    ).fetchone()
    assert (batch["rows_total"], batch["rows_rejected"]) == (4, 1)
    raw = conn.execute(
        "SELECT raw_row ->> 'line' AS line FROM tickagg.ingest_rejects WHERE batch_id = %s",
        (res["batch_id"],),
    ).fetchone()["line"]
    if raw is not None:  # (a line judged by ingest_staged_bars keeps its fields instead)
        assert raw.startswith("UB,") and len(raw) <= 1000
    # the printed report is short lines
    p = h.run_cli(dsn, "ingest", "bars", str(path), timeout=120)
    assert p.returncode == 3 and max(len(x) for x in p.stdout.splitlines()) < 300, p.stdout


@pytest.mark.parametrize("case", sorted(UNREADABLE_LINES))
def test_an_unreadable_tick_line_is_rejected_and_its_neighbours_land(
    dsn, conn, tick_now, tmp_path, case
):
    line = UNREADABLE_LINES[case][0].replace(b"UB,2025-09-01T00:01:00Z", b"UT,2025-09-01")
    path = tmp_path / f"{case}.csv"
    path.write_bytes(
        f"{TICKS_HEADER}\n{tick(tick_now, 0)}\n".encode()
        + line
        + f"\n{tick(tick_now, 2)}\n".encode()
    )
    code, res, err = ingest(dsn, "ticks", path)
    assert code == 3, err
    assert (res["rows_landed"], res["rows_rejected"]) == (2, 1), res
    rejects = tick_rejects(conn, res["batch_id"])
    assert list(rejects) == [3] and says(rejects[3], UNREADABLE_LINES[case][1]), rejects[3][:300]
    n = conn.execute("SELECT count(*) AS n FROM tickagg.ticks WHERE canonical_symbol = 'UT'")
    assert n.fetchone()["n"] == 2


def test_an_unreadable_file_is_one_line_and_exit_2(dsn, bar_symbol, tick_now, tmp_path):
    noise = bytes(random.Random(13).randrange(256) for _ in range(4096))
    parquet = tmp_path / "good.parquet"
    _bars_parquet(parquet, 3000)
    whole = parquet.read_bytes()
    files = {
        "random.csv": noise,
        "nul_header.csv": b"canonical_symbol,ts_utc\x00,open\n",
        "random.parquet": noise,
        "truncated.parquet": whole[: len(whole) // 2],
        "text.parquet": f"{BARS_HEADER}\n{bar(0)}\n".encode(),
        "not_gzip.csv.gz": noise,
    }
    for name, body in files.items():
        path = tmp_path / name
        path.write_bytes(body)
        for kind in ("bars", "ticks"):
            code, _, err = ingest(dsn, kind, path)
            assert code == 2, (name, kind, err)
            assert len(err.strip().splitlines()) == 1, (name, kind, err)
            assert err.startswith("error: ") and name in err, (name, kind, err)


def test_a_parquet_file_corrupt_after_its_first_batch_lands_that_batch(
    dsn, bar_symbol, tmp_path, monkeypatch
):
    """A file whose later row group is corrupt: the rows before it land, then one
    line naming the file and where it broke (exit 2)."""
    import pyarrow.parquet as pq

    path = tmp_path / "groups.parquet"
    _bars_parquet(path, 600, row_group_size=200)
    meta = pq.ParquetFile(path).metadata
    last = meta.row_group(2).column(0)
    body = bytearray(path.read_bytes())
    start = last.data_page_offset
    body[start : start + 64] = bytes(64)  # the last row group's first page header
    path.write_bytes(bytes(body))
    p = h.run_cli(dsn, "ingest", "bars", str(path), timeout=120)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "groups.parquet" in p.stderr, p.stderr
    # (the batch size is the runner's, larger than a row group: nothing may land, or
    # the groups before; never a row of the broken group)
    got = landed_bars(bar_symbol)
    assert got <= {T0 + dt.timedelta(minutes=i) for i in range(400)}


def test_a_gzip_file_cut_short_is_one_line(dsn, bar_symbol, tmp_path):
    """A .csv.gz cut off mid-stream: the chunks before the cut land (here none: the
    file is smaller than a chunk), then one line naming the file and the line after
    which it could not be read (exit 2), not an EOFError traceback."""
    import gzip

    lines = [BARS_HEADER] + [bar(i) for i in range(4000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) * 3 // 4])
    p = h.run_cli(dsn, "ingest", "bars", str(path), timeout=120)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "cut.csv.gz: cannot be read after line" in p.stderr, p.stderr


def _bars_parquet(path, n: int, row_group_size: int | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "canonical_symbol": ["UB"] * n,
            "ts_utc": [T0 + dt.timedelta(minutes=i) for i in range(n)],
            "open": [10.0] * n,
            "high": [12.0] * n,
            "low": [9.0] * n,
            "close": [11.0] * n,
            "volume": [5.0] * n,
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def test_second_60_and_hour_24_are_rejected_and_finite_numbers_land(dsn, bar_symbol, tmp_path):
    """`01:01:60Z` was taken for 01:02 (so a good 01:02 row later was its duplicate),
    `24:00` for the next day; 1e308 and 3-digit exponents were "not a finite number"."""
    conn = bar_symbol
    rows = [
        bar(0),  # line 2
        bar(0, stamp="2025-09-01T00:00:60Z"),  # 3: rejected
        bar(1),  # 4: the minute a :60 would have taken
        bar(0, stamp="2025-09-01T23:59:60Z"),  # 5: rejected
        bar(0, stamp="2025-09-01T24:00:00Z"),  # 6: rejected
        bar(0, stamp="2025-09-01 24:00"),  # 7: rejected
        bar(24 * 60),  # 8: 2025-09-02T00:00, the minute 24:00 would have taken
        bar(2, volume="1e308"),  # 9
        bar(3, volume="1.5e002"),  # 10
        bar(4, volume="1E-300"),  # 11
        bar(5, volume="1e309"),  # 12: overflows
        bar(6, volume="1e-400"),  # 13: underflows to 0
    ]
    path = tmp_path / "edges.csv"
    path.write_text(BARS_HEADER + "\n" + "\n".join(rows) + "\n")
    code, res, err = ingest(dsn, "bars", path)
    assert code == 3, err
    rejects = bar_rejects(conn, res["batch_id"])
    assert sorted(rejects) == [3, 5, 6, 7, 12, 13], rejects
    assert all("is not a timestamp" in rejects[n] for n in (3, 5, 6, 7)), rejects
    assert all("is not a finite number" in rejects[n] for n in (12, 13)), rejects
    volumes = {
        r["ts_utc"]: r["volume"]
        for r in conn.execute(
            "SELECT ts_utc, volume FROM tickagg.data_bars WHERE canonical_symbol = 'UB'"
        )
    }
    m = lambda i: T0 + dt.timedelta(minutes=i)  # noqa: E731
    assert volumes == {m(0): 5, m(1): 5, m(24 * 60): 5, m(2): 1e308, m(3): 150, m(4): 1e-300}


def test_tick_edges_second_60_extra_field_and_3_digit_exponents(dsn, conn, tick_now, tmp_path):
    t0 = tick_now
    minute = t0.replace(second=0)
    rows = [
        tick(t0, 0),  # 2
        tick(t0, 0, stamp=f"{minute:%Y-%m-%dT%H:%M}:60Z"),  # 3: rejected
        tick(t0, 0, stamp=f"{minute:%Y-%m-%d}T24:00:00Z"),  # 4: rejected
        tick(t0, 1) + ",extra",  # 5: a trailing extra field, rejected
        tick(t0, 2, size="1e308"),  # 6
        tick(t0, 3, last="1.005e002"),  # 7
        tick(t0, 4, last="1e309"),  # 8: rejected
        tick(t0, 5),  # 9
    ]
    path = tmp_path / "tick_edges.csv"
    path.write_text(TICKS_HEADER + "\n" + "\n".join(rows) + "\n")
    code, res, err = ingest(dsn, "ticks", path)
    assert code == 3, err
    rejects = tick_rejects(conn, res["batch_id"])
    assert sorted(rejects) == [3, 4, 5, 8], rejects
    assert "expected 6 fields, got 7" in rejects[5], rejects
    got = {
        r["ts_utc"]: (r["last_price"], r["size"])
        for r in conn.execute(
            "SELECT ts_utc, last_price, size FROM tickagg.ticks WHERE canonical_symbol = 'UT'"
        )
    }
    s = lambda i: t0 + dt.timedelta(seconds=i)  # noqa: E731
    assert got == {s(0): (100.5, 2), s(2): (100.5, 1e308), s(3): (100.5, 2), s(5): (100.5, 2)}


@pytest.mark.parametrize("jobs", [1, 2])
def test_unreadable_lines_in_many_chunks_landed_by_parts(
    dsn, bar_symbol, tmp_path, monkeypatch, jobs
):
    """A file of many chunks with unreadable lines here and there, landed by one or
    two sessions at once (--jobs): each such line rejected once, every good row
    landed, the totals and the batch counting each line once."""
    from runner import db, ingest

    conn = bar_symbol
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 600)
    bad = {5: b"UB,\xff", 23: b"UB,2025-09-01T00:01:00Z,1\x00", 41: b'UB,"open', 77: b"\xfe\xff"}
    lines, good = [BARS_HEADER.encode()], set()
    for n in range(2, 120):
        if n in bad:
            lines.append(bad[n])
        else:
            lines.append(bar(n).encode())
            good.add(T0 + dt.timedelta(minutes=n))
    path = tmp_path / "many.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with db.make_pool(dsn, max_size=jobs) as pool:
        res = ingest.ingest_bars_file(pool, str(path), jobs=jobs)
    assert (res["rows_total"], res["rows_rejected"]) == (118, 4), res
    assert [r["line_no"] for r in res["rejects"]] == sorted(bad)
    assert landed_bars(conn) == good
    assert sorted(bar_rejects(conn, res["batch_id"])) == sorted(bad)
    batch = conn.execute(
        "SELECT rows_total, rows_rejected FROM tickagg.ingest_batches WHERE batch_id = %s",
        (res["batch_id"],),
    ).fetchone()
    assert (batch["rows_total"], batch["rows_rejected"]) == (118, 4)
