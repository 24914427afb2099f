"""ingest_staged_bars casts fields of the everyday shape directly (the fast path)
and reads everything else through parse_timestamptz / parse_float8; a chunk whose
fast cast fails is judged again by those functions alone (the slow path). Both
must land exactly what the rules say. The same mixed file (good rows, odd but
valid timestamp and number shapes, shapes a cast would accept but the rules
reject, malformed lines, duplicates, corrections, lower-ranked sources, unknown
symbols) is ingested once as it is and once with one more line whose fast cast
fails, which sends its chunk down the slow path. Rows and rejects of both are
compared one by one with an expectation computed here from the documented rules."""

from __future__ import annotations

import csv
import datetime as dt
import uuid

from bar_rules import expected_ingest

from runner import file_chunks, ingest, queries

UTC = dt.UTC
BASE = dt.datetime(2024, 5, 6, 0, 0, tzinfo=UTC)
HEADER = "canonical_symbol,ts_utc,open,high,low,close,volume,source"
# a file line whose timestamp has the everyday shape but no such day: its cast fails
SLOW_PATH_LINE = "{sym},2024-02-30 00:00:00,1,2,0.5,1.5,1,"


def mixed_lines() -> list[str]:
    """The file's lines after the header, with {a} and {b} for the two symbols."""
    minute = iter(range(10_000))

    def at(shape: str = "%Y-%m-%d %H:%M:%S") -> str:
        return (BASE + dt.timedelta(minutes=next(minute))).strftime(shape)

    lines = [f"{{a}},{at()},100,101,99,100.5,{i}," for i in range(40)]  # everyday rows
    lines += [f"{{b}},{at()},100.25,101.5,99.75,100.5,7," for _ in range(20)]
    valid_ts = [
        at("%Y-%m-%dT%H:%M:%SZ"), at("%Y-%m-%dT%H:%M:%S"), at("%Y-%m-%d %H:%M"),
        at("%Y-%m-%d %H:%M:%S.000000"), at(" %Y-%m-%d %H:%M:%S "), at("%Y-%m-%d %H:%M:%Sz"),
        at("%Y-%m-%d %H:%M:%S UTC"), at("%Y-%m-%d %H:%M:%S+00:00"), at("%Y-%m-%dT%H:%M:%S+0000"),
        (BASE + dt.timedelta(hours=30)).strftime("%Y-%m-%d %H:%M:%S+02"),
        (BASE + dt.timedelta(hours=31)).strftime("%Y-%m-%dT%H:%M:%S-05:30"),
        (BASE + dt.timedelta(days=3)).strftime("%Y-%m-%d"),
    ]  # fmt: skip
    lines += [f"{{a}},{ts},100,101,99,100.5,1," for ts in valid_ts]
    invalid_ts = [
        "infinity", "-infinity", "epoch", "now", "today", "Jan 4 2024", "05/06/2024 00:00",
        at("%Y-%m-%d %H:%M:%S PST"), at("%Y%m%d %H%M%S"), at("%Y-%m-%d %H:%M:%S.1234567"),
        at("%Y-%m-%d %H:%M:%S America/New_York"), "J2460437", "", "2024-05-06 00:00:0 ",
        at("%Y-%m-%d %H:%M:30"),
    ]  # fmt: skip
    lines += [f"{{a}},{ts},100,101,99,100.5,1," for ts in invalid_ts]
    valid_numbers = [" 100 ", "1e2", "100.", "+100", "0100.00", "1.0E+02"]
    lines += [f"{{b}},{at()},{n},101,99,100.5,{n}," for n in valid_numbers]
    invalid_numbers = ["NaN", "nan", "Infinity", "inf", "-Infinity", "1e100", "0x10", "1,5", "\t5",
                       "1_000", "１００"]  # fmt: skip
    lines += [f'{{b}},{at()},"{n}",101,99,100.5,1,' for n in invalid_numbers]
    lines += [f"{{b}},{at()},100,101,99,100.5,{v}," for v in ("NaN", "-1", "", "Infinity")]
    lines += [
        f"{{a}},{BASE:%Y-%m-%d %H:%M:%S},100,101,99,100.5,0,",  # same key as line 2, same content
        # the key of line 3 again, written another way, with other content
        f"{{a}},{BASE + dt.timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ},100,101,99,100.75,1,",
        f"{{a}},{BASE + dt.timedelta(minutes=2):%Y-%m-%d %H:%M:%S},100,101,99,100.5,2,Bad Source",
        f"{{a}},{BASE + dt.timedelta(minutes=3):%Y-%m-%d %H:%M:%S},100,101,99,100.5",  # too few
        f"{{a}},{BASE + dt.timedelta(minutes=4):%Y-%m-%d %H:%M:%S},100,101,99,100.5,4,,x",
        f"NOPE,{at()},100,101,99,100.5,1,",
        f"{{a}},{at()},100,99,101,100.5,1,",  # high below low
        f"{{a}},{at()},0,101,0,100.5,1,",
    ]
    # stored at rank 10 (see stored_before): a lower rank is refused, an equal one corrects
    sources = ["", "historical_aggregated", "live_gap_filled", "historical_aggregated"]
    lines += [
        f"{{b}},{BASE + dt.timedelta(days=2, minutes=i):%Y-%m-%d %H:%M:%S},100,101,99,100.5,1,{src}"
        for i, src in enumerate(sources)
    ]
    return lines


def stored_before(conn, sym: str) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close,"
            " volume, source, source_rank) SELECT %s, %s::timestamptz + m * interval '1 minute',"
            " 100, 101, 99, 100, 1, 'historical_aggregated', 10 FROM generate_series(0, 3) AS m",
            (sym, BASE + dt.timedelta(days=2)),
        )


def landed(conn, syms: list[str], batch_id: int) -> tuple[dict, dict]:
    rows = {
        (r["canonical_symbol"], r["ts_utc"]): (
            (r["open"], r["high"], r["low"], r["close"], r["volume"]),
            r["source"],
            r["source_rank"],
        )
        for r in conn.execute(
            "SELECT * FROM tickagg.data_bars WHERE canonical_symbol = ANY(%s)", (syms,)
        )
    }
    rejects = {
        r["line_no"]: r["reason"]
        for r in conn.execute(
            "SELECT line_no, reason FROM tickagg.ingest_rejects WHERE batch_id = %s", (batch_id,)
        )
    }
    return rows, rejects


def raw_row(line: str) -> dict:
    """A rejected line as ingest_rejects keeps it: the fields as text (empty is
    null), the source as it was taken (the default when empty); a line with more
    fields than the header as its text."""
    record = next(csv.reader([line]))
    if any(record[8:]):
        return {"line": line}
    fields = [f if f != "" else None for f in (record + [None] * 8)[:8]]
    names = HEADER.split(",")
    raw = dict(zip(names, fields, strict=True)) | {"vwap": None, "trade_count": None}
    raw["source"] = (raw["source"] or "").strip() or "polygon_historical"
    return raw


def raw_rows(conn, batch_id: int) -> dict:
    return {
        r["line_no"]: r["raw_row"]
        for r in conn.execute(
            "SELECT line_no, raw_row FROM tickagg.ingest_rejects WHERE batch_id = %s", (batch_id,)
        )
    }


def ingest_counting_parse_calls(conn, path: str) -> tuple[dict, int]:
    """Ingest a file chunk by chunk as `tickagg ingest bars` does (runner.ingest),
    in this session, and count the calls of parse_timestamptz it made."""
    columns, chunks = ingest.open_bars_file(path)
    with conn.transaction():  # (the chunks' own transactions are savepoints in it)
        conn.execute("SET LOCAL track_functions = 'pl'")
        queries.create_bars_seen(conn)
        res = file_chunks.land_chunks(
            chunks,
            lambda chunk, batch_id, line_offset: ingest.ingest_chunk(
                conn, chunk, columns, "mixed.csv", None, batch_id, line_offset
            ),
        )
        calls = conn.execute(
            "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_xact_user_functions"
            " WHERE funcname = 'parse_timestamptz'"
        ).fetchone()["n"]
        queries.drop_bars_seen(conn)
    return res, calls


def test_fast_and_slow_judging_land_what_the_rules_say(conn, tmp_path):
    outcomes = {}
    for path_taken in ("fast", "slow"):
        a, b = (f"FP{uuid.uuid4().hex[:6].upper()}" for _ in range(2))
        with conn.transaction():
            for sym in (a, b):
                queries.register_symbol(conn, sym, "crypto_24x7", asset_class="crypto",
                                        active=False, test_active=True)  # fmt: skip
        stored_before(conn, b)
        before, _ = landed(conn, [a, b], -1)
        lines = [line.format(a=a, b=b) for line in mixed_lines()]
        if path_taken == "slow":
            lines.append(SLOW_PATH_LINE.format(sym=a))
        records = ([f if f != "" else None for f in fields] for fields in csv.reader(lines))
        rows, rejects, _, _ = expected_ingest(enumerate(records, start=2), {a, b}, before)
        path = tmp_path / f"{path_taken}.csv"
        path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
        res, parse_calls = ingest_counting_parse_calls(conn, str(path))
        # the slow path parses every timestamp with parse_timestamptz, the fast
        # path only the ones that are not of the everyday shape
        if path_taken == "fast":
            assert parse_calls < len(lines) // 2
        else:
            assert parse_calls >= len(lines)
        got_rows, got_rejects = landed(conn, [a, b], res["batch_id"])
        assert got_rejects == rejects, path_taken
        assert raw_rows(conn, res["batch_id"]) == {
            line: raw_row(lines[line - 2]) for line in rejects
        }
        assert got_rows == rows, path_taken
        assert res["rows_total"] == len(lines) and res["rows_rejected"] == len(rejects)
        # the same outcome in terms of the lines, whichever symbols they were written for
        outcomes[path_taken] = (
            {line: reason.replace(a, "A").replace(b, "B") for line, reason in got_rejects.items()},
            {(("A" if s == a else "B"), ts): v for (s, ts), v in got_rows.items()},
        )
    slow_rejects, slow_rows = outcomes["slow"]
    assert (
        slow_rejects.pop(len(mixed_lines()) + 2)
        == "ts_utc '2024-02-30 00:00:00' is not a timestamp"
    )
    assert (slow_rejects, slow_rows) == outcomes["fast"]
