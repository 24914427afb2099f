"""Bar ingest: a CSV or Parquet file goes to the database chunk by chunk.

The file's bytes (a Parquet file's rows written as CSV by pyarrow) are COPYed
straight into a text temp stage (runner.file_chunks), and
``tickagg.ingest_staged_bars`` validates and lands each chunk set-based in
SQL: every check (timestamps, NaN, ranges, unknown symbols, duplicates) happens
there, with one definition. Only a chunk that does not COPY (a record with too
few or too many fields, a blank line, broken quoting) is re-read here, record
by record, so its rows still get their line numbers. Each chunk commits on its
own: memory stays flat for any file size, and a re-run after a crash is
harmless (identical rows write nothing). A file over one chunk is landed by two
sessions at once (`--jobs`): each stages every chunk and judges and writes only
its part of the rows, split by key so that the parts never meet."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import psycopg

from . import file_chunks, queries
from .errors import InputFormatError, wrap_exceptions
from .file_chunks import land_chunks_in_parts

log = logging.getLogger(__name__)

# module attributes, so tests can make chunks small
CHUNK_BYTES = file_chunks.CHUNK_BYTES
PARQUET_BATCH_ROWS = file_chunks.PARQUET_BATCH_ROWS

REQUIRED_COLUMNS = ("canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("source", "vwap", "trade_count")

# Stage row: (line_no, canonical_symbol, ts_utc, open, high, low, close, volume, source, vwap,
# trade_count)
StageRow = tuple
# Called after each chunk with the running totals.
Progress = Callable[[dict], None]


def stage_columns(header: list[str], path: str) -> list[str]:
    """The stage column each field of a record goes to, in file order. Columns
    bars do not use (and repeats of one) go to ignored_<n> columns."""
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputFormatError(
            f"{path}: missing required column(s): {', '.join(missing)} "
            f"(header has: {', '.join(h.strip() for h in header) or 'nothing'}; "
            f"expected {', '.join(REQUIRED_COLUMNS)}[, source, vwap, trade_count])"
        )
    columns: list[str] = []
    ignored = 0
    for name in names:
        if name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS and name not in columns:
            columns.append(name)
        else:
            columns.append(f"ignored_{ignored}")
            ignored += 1
    return columns


def open_bars_file(path: str) -> tuple[list[str], Iterator[bytes]]:
    """(stage columns, chunks of CSV lines without header). Header problems raise
    InputFormatError here, before anything touches the database."""
    if not os.path.exists(path):
        raise InputFormatError(f"{path}: no such file")
    if file_chunks.file_kind(path) == "parquet":
        columns = stage_columns(file_chunks.parquet_names(path), path)
        return columns, file_chunks.read_ahead(file_chunks.parquet_chunks(path, PARQUET_BATCH_ROWS))
    columns = stage_columns(file_chunks.csv_header(path), path)
    return columns, file_chunks.read_ahead(file_chunks.csv_chunks(path, CHUNK_BYTES))


def _stage_rows(
    records: Iterator[tuple[int, list[str], str | None]],
    columns: list[str],
    line_offset: int,
    unreadable: list[tuple[int, str, str]],
) -> Iterator[StageRow]:
    """A re-read chunk's records as stage rows, the way this reader always read a
    file: a missing field is empty, an empty field is NULL. A record that could not
    be read, or that has more fields than the header with one of them not empty (a
    shifted row: which field is which cannot be known), goes to unreadable instead
    (line, reason, its line's text), for _reject_unreadable."""
    wanted = queries.STAGE_COLUMNS[1:]
    for line_no, record, problem in records:
        if problem is None and any(v != "" for v in record[len(columns) :]):
            problem = f"{len(record)} fields, the header has {len(columns)}"
            record = [",".join(record)]
        if problem is not None:
            unreadable.append((line_no, problem, record[0]))
            continue
        values = dict.fromkeys(wanted)
        for col, v in zip(columns, record, strict=False):
            if col in values:
                values[col] = v if v != "" else None
        yield (line_no - line_offset, *(values[c] for c in wanted))


def _write_stage_rows(conn: psycopg.Connection, rows: Iterable[StageRow]) -> None:
    with wrap_exceptions(), conn.cursor() as cur:
        with cur.copy(queries.COPY_BARS_STAGE) as copy:
            for row in rows:
                copy.write_row(row)


def ingest_chunk(
    conn: psycopg.Connection,
    chunk: bytes,
    columns: list[str],
    file_name: str,
    default_source: str | None,
    batch_id: int | None,
    line_offset: int,
    part: int = 0,
    parts: int = 1,
) -> dict:
    """Land one chunk (this session's part of it) in ONE transaction (committed on return)."""
    ignored = sum(c.startswith("ignored_") for c in columns)
    unreadable: list[tuple[int, str, str]] = []
    with conn.transaction():
        file_chunks.stage_chunk(
            conn,
            chunk,
            line_offset,
            create_stage=lambda: queries.create_bars_stage(conn, ignored),
            copy_sql=queries.copy_bars_chunk_sql(columns),
            write_records=lambda recs: _write_stage_rows(
                conn, _stage_rows(recs, columns, line_offset, unreadable)
            ),
        )
        res = queries.ingest_staged_bars(
            conn, file_name, default_source, batch_id, line_offset, part, parts
        )
        # (an unreadable line has no key to split the parts by: the first part takes it)
        return _reject_unreadable(conn, res, unreadable if part == 0 else [])


def _reject_unreadable(conn: psycopg.Connection, res: dict, unreadable: list) -> dict:
    """A chunk's result with its unreadable lines rejected into its batch (in the
    chunk's transaction) and counted, the first 20 rejects in line order."""
    if not unreadable:
        return res
    lines, reasons, raws = (list(x) for x in zip(*unreadable, strict=True))
    queries.ingest_reject_lines(conn, res["batch_id"], lines, reasons, raws)
    rejects = [{"line_no": n, "reason": r} for n, r in zip(lines, reasons, strict=True)]
    return res | {
        "rows_total": res["rows_total"] + len(lines),
        "rows_rejected": res["rows_rejected"] + len(lines),
        "rejects": sorted(res["rejects"] + rejects, key=lambda r: r["line_no"])[:20],
    }


def ingest_rows(
    conn, rows: Iterable[StageRow], file_name: str, default_source: str | None = None
) -> dict:
    """Stage rows a producer hands (each with its line number) and land them, all
    in ONE transaction, through the same set-based judging as a file."""
    with conn.transaction():
        queries.create_bars_stage(conn)
        _write_stage_rows(conn, rows)
        return queries.ingest_staged_bars(conn, file_name, default_source)


def default_jobs(path: str) -> int:
    """Sessions landing a file at once: two (one per core of a small server) for a
    file of more than one chunk; one for a smaller file, where a second session
    would mostly repeat the first one's fixed cost."""
    return 2 if os.path.getsize(path) > CHUNK_BYTES else 1


@contextmanager
def _part_session(pool, part: int, parts: int, columns, name, default_source, batch_id):
    """One part's session: its seen-keys table lives as long as the file's ingest."""
    with pool.connection() as conn:
        with conn.transaction():
            queries.create_bars_seen(conn)
        try:
            yield lambda chunk, line_offset: ingest_chunk(
                conn, chunk, columns, name, default_source, batch_id, line_offset, part, parts
            )
        finally:
            if not conn.broken:
                with conn.transaction():
                    queries.drop_bars_seen(conn)


def ingest_bars_file(
    pool,
    path: str,
    default_source: str | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> dict:
    """Land a bar file with `jobs` sessions at once (default: default_jobs); the
    pool must hold that many connections."""
    columns, chunks = open_bars_file(path)
    name = os.path.basename(path)
    parts = min(jobs or default_jobs(path), pool.max_size)
    with pool.connection() as conn:
        batch_id = queries.ingest_batch_start(conn, name)
    total = land_chunks_in_parts(
        chunks,
        parts,
        lambda part: _part_session(pool, part, parts, columns, name, default_source, batch_id),
        batch_id,
        progress,
    )
    log.info(
        "ingested %s: landed=%s unchanged=%s outranked=%s rejected=%s",
        name,
        total.get("rows_landed"),
        total.get("rows_unchanged"),
        total.get("rows_outranked"),
        total.get("rows_rejected"),
    )
    return total


def _shortened(reason: str, limit: int = 200) -> str:
    """A reason quoting a huge field (200 kB of digits) as one readable line; the
    whole reason stays in the rejects table."""
    if len(reason) <= limit:
        return reason
    return (
        f"{reason[: limit // 2]}...({len(reason) - limit:,} characters)...{reason[-limit // 2 :]}"
    )


def format_result(result: dict, rejects_view: str = "tickagg.ingest_rejects_recent") -> str:
    out = io.StringIO()
    out.write(
        f"batch {result.get('batch_id')}: {result.get('rows_total', 0)} rows, "
        f"{result.get('rows_landed', 0)} landed, "
        f"{result.get('rows_unchanged', 0)} unchanged, "
        + (
            f"{result['rows_outranked']} outranked (a higher-ranked source's bar is stored), "
            if result.get("rows_outranked")
            else ""
        )
        + f"{result.get('rows_rejected', 0)} rejected\n"
    )
    rejects = result.get("rejects") or []
    for r in rejects[:20]:
        out.write(f"  line {r.get('line_no')}: {_shortened(str(r.get('reason')))}\n")
    more = (result.get("rows_rejected") or 0) - len(rejects[:20])
    if more > 0:
        out.write(f"  ... and {more} more (see view {rejects_view})\n")
    return out.getvalue()
