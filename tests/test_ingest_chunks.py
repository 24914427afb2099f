"""The chunked bar ingest (`tickagg ingest bars`, runner.ingest) against an
expectation computed here in Python from the documented rules: a randomized
mixed file (good rows, malformed fields, wrong field counts, blank lines,
duplicates within and across chunks, corrections, lower-ranked sources, unknown
symbols, bad timestamps), CSV and Parquet, in chunks small enough that every
kind lands on both sides of a chunk boundary. Rows and rejects are compared one
by one. Re-ingesting the same file writes nothing."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid

import pytest
from bar_rules import expected_ingest, number_of

from runner import db, file_chunks, ingest, queries

UTC = dt.UTC
BASE = dt.datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
HEADER = ["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume", "source"]


def make_file(rng: random.Random, symbols: list[str], csv_shapes: bool):
    """(records as written, physical line of each, raw CSV lines) of a mixed file.
    Records are lists of text/None; csv_shapes adds blank lines and wrong field counts."""
    records, lines, raw = [], [], []
    line = 1
    used = []
    for _ in range(260):
        sym = rng.choice(symbols)
        minute = rng.randrange(400)
        p = 100 + rng.randrange(50) / 4
        # 9 minutes apart: the keys span three UTC days, so parallel parts split symbols
        ts = (BASE + dt.timedelta(minutes=minute * 9)).strftime("%Y-%m-%d %H:%M:%S")
        rec = [sym, ts, f"{p:.2f}", f"{p + 1:.2f}", f"{p - 1:.2f}", f"{p + 0.5:.2f}",
               str(rng.randrange(1, 99)), None]  # fmt: skip
        kind = rng.random()
        if kind < 0.12 and used:
            rec = list(rng.choice(used))  # exact repeat of an earlier line
            if rng.random() < 0.5 and number_of(rec[2]) is not None:
                rec[5] = f"{number_of(rec[2]) + 0.25:.2f}"  # same key, other content
        elif kind < 0.16:
            rec[0] = "NOPE" + rec[0]
        elif kind < 0.20:
            rec[1] = rng.choice(["2024-02-30 00:00:00", "yesterday", "2024-03-04 00:00:30",
                                 "2024-03-04T01:02:00Z", "2024-03-04 03:00:00+01:00",
                                 "2024-3-4 1:00"])  # fmt: skip
        elif kind < 0.26:
            col = rng.randrange(2, 7)
            rec[col] = rng.choice(["NaN", "1e100", "abc", "1.2.3", "-5", "inf", "", None, " 7 "])
        elif kind < 0.30:
            rec[3], rec[4] = rec[4], rec[3]  # high below low
        elif kind < 0.36:
            rec[7] = rng.choice(["historical_aggregated", "live_gap_filled", "Bad Source"])
        elif kind < 0.40:
            rec[4] = "0.5"  # a wide bar: valid
        if csv_shapes and rng.random() < 0.03:
            raw.append("")
            line += 1
        if csv_shapes and rng.random() < 0.04:
            rec = rec[: rng.randrange(3, 7)] if rng.random() < 0.5 else [*rec, "extra"]
        line += 1
        lines.append(line)
        records.append(rec)
        used.append(rec[:8] if len(rec) >= 8 else rec + [None] * (8 - len(rec)))
        raw.append(",".join("" if v is None else v for v in rec))
    return records, lines, raw


def stored_rows(conn, symbols):
    out = {}
    for r in conn.execute(
        "SELECT canonical_symbol, ts_utc, open, high, low, close, volume, source, source_rank"
        " FROM tickagg.data_bars WHERE canonical_symbol = ANY(%s)",
        (symbols,),
    ):
        key = (r["canonical_symbol"], r["ts_utc"])
        out[key] = ((r["open"], r["high"], r["low"], r["close"], r["volume"]), r["source"],
                    r["source_rank"])  # fmt: skip
    return out


def write_parquet(path, records):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {name: [(r + [None] * 8)[i] for r in records] for i, name in enumerate(HEADER)}
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()}), path)


@pytest.mark.parametrize(("fmt", "jobs"), [("csv", 1), ("parquet", 1), ("csv", 3), ("parquet", 2)])
def test_chunked_ingest_matches_the_rules_row_by_row(dsn, conn, tmp_path, monkeypatch, fmt, jobs):
    """Also with several sessions landing the file at once (jobs): each judges its
    share of every chunk, and together they land exactly what one session does."""
    rng = random.Random(f"ingest-{fmt}")
    symbols = [f"CK{uuid.uuid4().hex[:6].upper()}" for _ in range(3)]
    with conn.transaction():
        for s in symbols:
            queries.register_symbol(conn, s, "crypto_24x7", asset_class="crypto", active=False,
                                    test_active=True)  # fmt: skip
    # stored before: some rows at a higher rank, so lower-ranked file rows must not replace them
    with conn.transaction():
        conn.execute(
            "INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close,"
            " volume, source, source_rank)"
            " SELECT s, %s::timestamptz + m * interval '9 minutes', 100, 101, 99, 100, 1,"
            " 'historical_aggregated', 10 FROM unnest(%s::text[]) AS s,"
            " generate_series(0, 399, 7) AS m",
            (BASE, symbols),
        )
    before = stored_rows(conn, symbols)
    records, lines, raw = make_file(rng, symbols, csv_shapes=fmt == "csv")
    path = tmp_path / f"mixed.{fmt}"
    if fmt == "csv":
        path.write_text(",".join(HEADER) + "\n" + "\n".join(raw) + "\n")
        monkeypatch.setattr(ingest, "CHUNK_BYTES", 700)
    else:
        write_parquet(path, records)
        lines = [i + 2 for i in range(len(records))]
        monkeypatch.setattr(ingest, "PARQUET_BATCH_ROWS", 11)
    numbered = zip(lines, records, strict=True)
    rows, rejects, changed, outranked = expected_ingest(numbered, set(symbols), before)

    with db.make_pool(dsn, max_size=jobs) as pool:
        res = ingest.ingest_bars_file(pool, str(path), jobs=jobs)
    got_rejects = {
        r["line_no"]: r["reason"]
        for r in conn.execute(
            "SELECT line_no, reason FROM tickagg.ingest_rejects WHERE batch_id = %s",
            (res["batch_id"],),
        )
    }
    assert got_rejects == rejects
    got = stored_rows(conn, symbols)
    assert got == rows
    assert res["rows_total"] == len(records)
    assert res["rows_rejected"] == len(rejects)
    assert res["rows_landed"] == changed
    assert res["rows_outranked"] == outranked > 0
    assert res["rows_unchanged"] == len(records) - changed - outranked - len(rejects)
    batch = conn.execute(
        "SELECT rows_landed, rows_unchanged, rows_outranked, rows_rejected"
        " FROM tickagg.ingest_batches_recent WHERE batch_id = %s",
        (res["batch_id"],),
    ).fetchone()
    assert batch == {
        "rows_landed": changed,
        "rows_unchanged": res["rows_unchanged"],
        "rows_outranked": outranked,
        "rows_rejected": len(rejects),
    }
    assert f"{outranked} outranked" in ingest.format_result(res)
    assert any(r.startswith("duplicate of") for r in rejects.values())

    # the same file again: nothing changes, nothing is written or queued
    seq = conn.execute("SELECT last_value FROM tickagg.bar_change_seq").fetchone()["last_value"]
    inval = conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"]
    with db.make_pool(dsn, max_size=jobs) as pool:
        again = ingest.ingest_bars_file(pool, str(path), jobs=jobs)
    assert again["rows_landed"] == 0 and again["rows_rejected"] == len(rejects)
    assert stored_rows(conn, symbols) == got
    assert (
        conn.execute("SELECT last_value FROM tickagg.bar_change_seq").fetchone()["last_value"]
        == seq
    )
    assert (
        conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"] == inval
    )


def test_typed_parquet_values_are_judged_as_their_python_text(dsn, conn, tmp_path):
    """Typed columns reach the rules as the reader always wrote them: non-finite
    floats as NaN / Infinity, timestamps in UTC (zone-less ones read as UTC)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sym = f"CK{uuid.uuid4().hex[:6].upper()}"
    with conn.transaction():
        queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto", active=False,
                                test_active=True)  # fmt: skip
    n = 6
    opens = [100.0, float("nan"), float("inf"), 100.0, -float("inf"), 100.0]
    ts = [dt.datetime(2024, 4, 2, 0, i) for i in range(n)]
    ts[3] = ts[3].replace(second=0, microsecond=500)  # a fraction of a second
    table = pa.table(
        {
            "canonical_symbol": [sym] * n,
            "ts_utc": pa.array(ts, type=pa.timestamp("us")),
            "open": opens,
            "high": [110.0] * n,
            "low": [90.0] * n,
            "close": [100.5] * n,
            "volume": pa.array(list(range(n)), type=pa.int64()),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    with db.make_pool(dsn, max_size=1) as pool:
        res = ingest.ingest_bars_file(pool, str(path))
    got = {
        r["line_no"]: r["reason"]
        for r in conn.execute(
            "SELECT line_no, reason FROM tickagg.ingest_rejects WHERE batch_id = %s",
            (res["batch_id"],),
        )
    }
    assert got == {
        3: "open 'NaN' is not a finite number",
        4: "open 'Infinity' is not a finite number",
        5: "ts_utc is not on a whole minute",
        6: "open '-Infinity' is not a finite number",
    }
    stored = conn.execute(
        "SELECT ts_utc FROM tickagg.data_bars WHERE canonical_symbol = %s ORDER BY ts_utc", (sym,)
    ).fetchall()
    assert [r["ts_utc"] for r in stored] == [ts[0].replace(tzinfo=UTC), ts[5].replace(tzinfo=UTC)]


def test_two_sessions_ingesting_the_same_keys_land_each_once(dsn, conn, tmp_path, monkeypatch):
    """Two processes' worth of sessions race on the same new keys: the plain INSERT
    of one fails on a key the other wrote, its chunk is judged again, and in the
    end every bar is stored once, counted as landed by exactly one of them."""
    import threading

    sym = f"CK{uuid.uuid4().hex[:6].upper()}"
    with conn.transaction():
        queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto", active=False,
                                test_active=True)  # fmt: skip
    n = 3000
    stamps = [(BASE + dt.timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    lines = [f"{sym},{ts},100,101,99,100.5,{i}" for i, ts in enumerate(stamps)]
    path = tmp_path / "same.csv"
    path.write_text(",".join(HEADER[:7]) + "\n" + "\n".join(lines) + "\n")
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 4096)
    results, errors = [], []
    start = threading.Barrier(2)

    def run():
        try:
            with db.make_pool(dsn, max_size=1) as pool:
                start.wait()
                results.append(ingest.ingest_bars_file(pool, str(path)))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r["rows_landed"] for r in results) == n
    assert all(r["rows_rejected"] == 0 for r in results)
    stored = conn.execute(
        "SELECT count(*) AS n, sum(volume) AS v FROM tickagg.data_bars WHERE canonical_symbol = %s",
        (sym,),
    ).fetchone()
    assert stored["n"] == n and stored["v"] == sum(range(n))


@pytest.mark.parametrize("inside", [1, 16])
def test_a_quoted_line_break_across_a_chunk_boundary_is_one_record(
    dsn, conn, tmp_path, monkeypatch, inside
):
    """A chunk boundary that falls on a line break inside a quoted field (here a
    note column bars ignore) must not split the record: every row lands as
    written, and a bad row after it is rejected at the line it starts on."""
    sym = f"CK{uuid.uuid4().hex[:6].upper()}"
    with conn.transaction():
        queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto", active=False,
                                test_active=True)  # fmt: skip
    header = ",".join(HEADER[:7]) + ",note\n"
    first = (
        f'{sym},{BASE:%Y-%m-%d %H:%M:%S},100,101,99,100.5,7,"one line\nand ""more"",\nand more"\n'
    )
    lines = [first]
    for i in range(1, 6):
        lines.append(
            f"{sym},{BASE + dt.timedelta(minutes=i):%Y-%m-%d %H:%M:%S},100,101,99,100.5,{i},\n"
        )
    lines.append(f"{sym},not a time,100,101,99,100.5,1,\n")
    path = tmp_path / "quoted.csv"
    path.write_bytes((header + "".join(lines)).encode())
    # the first chunk's bytes end just after a line break inside the quoted note
    monkeypatch.setattr(ingest, "CHUNK_BYTES", first.index("\n") + inside)

    with db.make_pool(dsn, max_size=1) as pool:
        res = ingest.ingest_bars_file(pool, str(path))
    assert (res["rows_total"], res["rows_landed"], res["rows_rejected"]) == (7, 6, 1)
    got_rejects = conn.execute(
        "SELECT line_no, reason FROM tickagg.ingest_rejects WHERE batch_id = %s",
        (res["batch_id"],),
    ).fetchall()
    # the header is line 1, the quoted record lines 2-4, then one line per record
    assert [(r["line_no"], r["reason"]) for r in got_rejects] == [
        (10, "ts_utc 'not a time' is not a timestamp")
    ]
    stored = conn.execute(
        "SELECT ts_utc, volume FROM tickagg.data_bars WHERE canonical_symbol = %s ORDER BY ts_utc",
        (sym,),
    ).fetchall()
    assert [(r["ts_utc"], r["volume"]) for r in stored] == [
        (BASE + dt.timedelta(minutes=i), 7 if i == 0 else i) for i in range(6)
    ]


def test_two_staged_calls_in_one_transaction_are_two_files(conn):
    """ingest_staged_bars keeps no keys from one call to the next unless the caller
    keeps tickagg_bars_seen: a producer's second call in the same transaction
    corrects the first call's bar instead of rejecting it as a duplicate line."""
    sym = f"CK{uuid.uuid4().hex[:6].upper()}"
    ts = BASE.isoformat()
    results = []
    with conn.transaction():
        queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto", active=False,
                                test_active=True)  # fmt: skip
        queries.create_bars_stage(conn)
        for close in ("100", "100.5"):
            conn.execute("TRUNCATE pg_temp.tickagg_bars_stage")
            with conn.cursor().copy(queries.COPY_BARS_STAGE) as cp:
                cp.write_row((2, sym, ts, "100", "101", "99", close, "5", None, None, None))
            results.append(queries.ingest_staged_bars(conn, "producer", None))
    assert [(r["rows_landed"], r["rows_rejected"]) for r in results] == [(1, 0), (1, 0)]
    close = conn.execute(
        "SELECT close FROM tickagg.data_bars WHERE canonical_symbol = %s", (sym,)
    ).fetchone()["close"]
    assert close == 100.5


def _ingest_cli_stderr(dsn, path, *options, tty: bool) -> str:
    """stderr of `tickagg ingest bars` as a process, a terminal or a pipe."""
    import os
    import pty
    import subprocess

    import helpers as h

    cmd = [str(h.TICKAGG), "--dsn", dsn, *options, "ingest", "bars", str(path)]
    if not tty:
        res = subprocess.run(cmd, env=h.cli_env(), capture_output=True, text=True, timeout=300)
        return res.stderr
    main, child = pty.openpty()
    proc = subprocess.Popen(cmd, env=h.cli_env(), stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    out = b""
    while True:
        try:
            block = os.read(main, 4096)
        except OSError:  # the process closed the terminal
            break
        if not block:
            break
        out += block
    proc.wait(timeout=300)
    os.close(main)
    return out.decode("utf-8", "replace")


def test_progress_on_a_terminal_only(dsn, conn, tmp_path):
    sym = f"CK{uuid.uuid4().hex[:6].upper()}"
    with conn.transaction():
        queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto", active=False,
                                test_active=True)  # fmt: skip
    rows = [
        f"{sym},{(BASE + dt.timedelta(minutes=i)).isoformat()},1,2,0.5,1.5,3" for i in range(50)
    ]
    path = tmp_path / "p.csv"
    path.write_text(
        ",".join(HEADER[:7]) + "\n" + "\n".join([*rows, f"{sym},bad,1,2,0.5,1,1"]) + "\n"
    )
    shown = _ingest_cli_stderr(dsn, path, tty=True)
    assert "ingest bars" in shown and "rows/s" in shown and "1 rejected" in shown, shown
    assert "rows/s" not in _ingest_cli_stderr(dsn, path, tty=False)
    assert "rows/s" not in _ingest_cli_stderr(dsn, path, "--log-format", "json", tty=True)


def test_read_ahead_keeps_order_raises_errors_and_stops_with_its_consumer():
    """file_chunks.read_ahead: the same chunks in order; an error of the reader is
    raised to the consumer after the chunks before it; a consumer that stops
    early stops the reader, which has then read at most two chunks more."""
    assert list(file_chunks.read_ahead(iter([b"a\n", b"b\n", b"c\n"]))) == [b"a\n", b"b\n", b"c\n"]

    def failing():
        yield b"a\n"
        raise ValueError("broken file")

    got = []
    with pytest.raises(ValueError, match="broken file"):
        for chunk in file_chunks.read_ahead(failing()):
            got.append(chunk)
    assert got == [b"a\n"]

    pulled = []

    def endless():
        while True:
            pulled.append(1)
            yield b"x\n"

    reader = file_chunks.read_ahead(endless())
    assert next(reader) == b"x\n"
    reader.close()  # joins the reader thread
    assert len(pulled) <= 3
    assert not any(t.name == "tickagg-read-ahead" for t in threading.enumerate())
