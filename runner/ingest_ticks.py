"""Tick ingest: stream a CSV or Parquet file into the database chunk by chunk.

Python never looks at a tick on the fast path: the file's bytes go straight
into COPY ... (FORMAT csv) of a typed temp stage, and
``tickagg.ingest_staged_ticks`` judges every tick set-based in SQL. Only a
chunk whose fields do not even COPY (a word where a number belongs, a row
with too many fields) is re-read in Python into a text stage, so its bad rows
are rejected with a line number and reason and its good rows still land.
Each chunk commits on its own: memory stays flat for any file size, and a
re-run after a crash is harmless: a tick's identity is its trade_id, or its
content and its occurrence among identical rows of the file, so the same file
again lands nothing while distinct identical trades all count."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import psycopg

from . import file_chunks, queries
from .errors import InputFormatError, wrap_exceptions
from .file_chunks import land_chunks

log = logging.getLogger(__name__)

CHUNK_BYTES = file_chunks.CHUNK_BYTES  # a module attribute, so tests can make chunks small

# file header name -> stage column
COLUMN_NAMES = {
    "canonical_symbol": "canonical_symbol",
    "ts_utc": "ts_utc",
    "bid": "bid",
    "ask": "ask",
    "last": "last_price",
    "last_price": "last_price",
    "size": "size",
    "trade_id": "trade_id",
}
REQUIRED = ("canonical_symbol", "ts_utc")


def stage_columns(header: list[str], path: str) -> list[str]:
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMN_NAMES]
    if unknown:
        raise InputFormatError(
            f"{path}: unknown column(s) {', '.join(unknown)}; a ticks file has "
            "canonical_symbol, ts_utc and any of bid, ask, last, size, trade_id"
        )
    cols = [COLUMN_NAMES[n] for n in names]
    missing = [c for c in REQUIRED if c not in cols]
    if missing or len(set(cols)) != len(cols):
        raise InputFormatError(
            f"{path}: header must name canonical_symbol and ts_utc once each"
            f" (header has: {', '.join(h.strip() for h in header) or 'nothing'})"
        )
    return cols


def open_ticks_file(path: str) -> tuple[list[str], Iterator[bytes]]:
    """(stage columns, chunks of CSV bytes without header, each ending at a line end)."""
    if not os.path.exists(path):
        raise InputFormatError(f"{path}: no such file")
    if file_chunks.file_kind(path) == "parquet":
        columns = stage_columns(file_chunks.parquet_names(path), path)
        return columns, file_chunks.parquet_chunks(path)
    return stage_columns(file_chunks.csv_header(path), path), file_chunks.csv_chunks(
        path, CHUNK_BYTES
    )


def _text_rows(
    records: Iterator[tuple[int, list[str], str | None]], columns: list[str]
) -> Iterator[tuple]:
    """One text-stage row per re-read record, with its line number and, for a
    record that could not be read or has the wrong number of fields, the problem
    (without its fields)."""
    stage = queries.TICKS_TEXT_STAGE_COLUMNS[1:8]
    for line_no, record, unreadable in records:
        values = dict.fromkeys(stage)
        problem = unreadable
        if problem is None and len(record) != len(columns):
            problem = f"expected {len(columns)} fields, got {len(record)}"
        if unreadable is None:
            for col, v in zip(columns, record, strict=False):
                values[col] = v if v != "" else None
        yield (line_no, *(values[c] for c in stage), problem)


def _write_text_stage(conn: psycopg.Connection, records, columns: list[str]) -> None:
    queries.create_ticks_stage(conn, text=True)
    with wrap_exceptions(), conn.cursor() as cur:
        with cur.copy(queries.COPY_TICKS_TEXT_STAGE) as cp:
            for row in _text_rows(records, columns):
                cp.write_row(row)


def ingest_chunk(
    conn: psycopg.Connection,
    chunk: bytes,
    columns: list[str],
    file_name: str,
    batch_id: int | None,
    line_offset: int,
) -> dict:
    """Land one chunk in ONE transaction (committed on return)."""
    with conn.transaction():
        text_stage = file_chunks.stage_chunk(
            conn,
            chunk,
            line_offset,
            create_stage=lambda: queries.create_ticks_stage(conn),
            copy_sql=queries.copy_ticks_stage_sql(columns),
            write_records=lambda records: _write_text_stage(conn, records, columns),
        )
        return queries.ingest_staged_ticks(conn, file_name, batch_id, line_offset, text_stage)


def ingest_ticks_file(pool, path: str, progress: Callable[[dict], None] | None = None) -> dict:
    columns, chunks = open_ticks_file(path)
    name = os.path.basename(path)
    with pool.connection() as conn:
        total = land_chunks(
            chunks,
            lambda chunk, batch_id, line_offset: ingest_chunk(
                conn, chunk, columns, name, batch_id, line_offset
            ),
            progress,
        )
    log.info(
        "ingested ticks %s: landed=%s duplicates=%s rejected=%s",
        name,
        total["rows_landed"],
        total["rows_unchanged"],
        total["rows_rejected"],
    )
    return total
