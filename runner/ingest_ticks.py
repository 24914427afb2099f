"""Tick ingest: stream a CSV or Parquet file into the database chunk by chunk.

Python never looks at a tick on the fast path: the file's bytes go straight
into COPY ... (FORMAT csv) of a typed temp stage, and
``tickagg.ingest_staged_ticks`` judges every tick set-based in SQL. Only a
chunk whose fields do not even COPY (a word where a number belongs, a row
with too many fields) is re-read in Python into a text stage, so its bad rows
are rejected with a line number and reason and its good rows still land.
Each chunk commits on its own: memory stays flat for any file size, and a
re-run after a crash is harmless (exact duplicate ticks count once)."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
from collections.abc import Iterator

import psycopg

from . import queries
from .errors import InputFormatError, wrap_exceptions

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 250_000
# file header name -> stage column
COLUMN_NAMES = {
    "canonical_symbol": "canonical_symbol",
    "ts_utc": "ts_utc",
    "bid": "bid",
    "ask": "ask",
    "last": "last_price",
    "last_price": "last_price",
    "size": "size",
}
REQUIRED = ("canonical_symbol", "ts_utc")


def stage_columns(header: list[str], path: str) -> list[str]:
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMN_NAMES]
    if unknown:
        raise InputFormatError(
            f"{path}: unknown column(s) {', '.join(unknown)}; a ticks file has "
            "canonical_symbol, ts_utc and any of bid, ask, last, size"
        )
    cols = [COLUMN_NAMES[n] for n in names]
    missing = [c for c in REQUIRED if c not in cols]
    if missing or len(set(cols)) != len(cols):
        raise InputFormatError(
            f"{path}: header must name canonical_symbol and ts_utc once each"
            f" (header has: {', '.join(h.strip() for h in header) or 'nothing'})"
        )
    return cols


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _csv_chunks(path: str) -> tuple[list[str], Iterator[bytes]]:
    with _open_binary(path) as fh:
        header_line = fh.readline().decode("utf-8-sig")
    if not header_line.strip():
        raise InputFormatError(f"{path}: file is empty (no header)")
    columns = stage_columns(next(csv.reader([header_line])), path)

    def chunks() -> Iterator[bytes]:
        with _open_binary(path) as fh:
            fh.readline()  # the header
            rest = b""
            while True:
                block = fh.read(CHUNK_BYTES)
                if not block:
                    if rest.strip():
                        yield rest if rest.endswith(b"\n") else rest + b"\n"
                    return
                block = rest + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    rest = block
                    continue
                rest = block[cut + 1 :]
                yield block[: cut + 1]

    return columns, chunks()


def _parquet_chunks(path: str) -> tuple[list[str], Iterator[bytes]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = list(pf.schema_arrow.names)
    columns = stage_columns(names, path)

    def chunks() -> Iterator[bytes]:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            arrays = []
            for col in batch.columns:
                if pa.types.is_timestamp(col.type):
                    # ISO text with an explicit offset: no reading of zone-less values
                    if col.type.tz is None:
                        col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
                    col = col.cast(pa.timestamp("us", tz="UTC"))
                arrays.append(col)
            buf = io.BytesIO()
            pacsv.write_csv(
                pa.RecordBatch.from_arrays(arrays, names=names),
                buf,
                write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
            )
            yield buf.getvalue()

    return columns, chunks()


def open_ticks_file(path: str) -> tuple[list[str], Iterator[bytes]]:
    """(stage columns, chunks of CSV bytes without header, each ending at a line end)."""
    if not os.path.exists(path):
        raise InputFormatError(f"{path}: no such file")
    lower = path.lower()
    if lower.endswith((".parquet", ".pq", ".parq")):
        return _parquet_chunks(path)
    if lower.endswith((".csv", ".csv.gz", ".txt")):
        return _csv_chunks(path)
    raise InputFormatError(f"{path}: unknown file type (expected .csv, .csv.gz or .parquet)")


def _text_rows(chunk: bytes, columns: list[str], line_offset: int) -> Iterator[tuple]:
    """Re-read a chunk in Python: one text-stage row per record, with its line
    number and, for a record with the wrong number of fields, the problem."""
    reader = csv.reader(io.StringIO(chunk.decode("utf-8", "replace")))
    stage = queries.TICKS_TEXT_STAGE_COLUMNS[1:7]
    start = 1
    for record in reader:
        line_no = line_offset + start
        start = reader.line_num + 1
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        values = dict.fromkeys(stage)
        problem = None
        if len(record) != len(columns):
            problem = f"expected {len(columns)} fields, got {len(record)}"
        for col, v in zip(columns, record, strict=False):
            values[col] = v if v != "" else None
        yield (line_no, *(values[c] for c in stage), problem)


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
        try:
            with conn.transaction():  # savepoint: a chunk that does not COPY is re-read
                queries.create_ticks_stage(conn)
                with conn.cursor() as cur, cur.copy(queries.copy_ticks_stage_sql(columns)) as cp:
                    cp.write(chunk)
            text_stage = False
        except psycopg.errors.DataError as exc:
            log.info("chunk after line %s did not COPY (%s); re-reading it row by row",
                     line_offset, str(exc).splitlines()[0])  # fmt: skip
            queries.create_ticks_stage(conn)
            queries.create_ticks_stage(conn, text=True)
            with wrap_exceptions(), conn.cursor() as cur:
                with cur.copy(queries.COPY_TICKS_TEXT_STAGE) as cp:
                    for row in _text_rows(chunk, columns, line_offset):
                        cp.write_row(row)
            text_stage = True
        return queries.ingest_staged_ticks(conn, file_name, batch_id, line_offset, text_stage)


def ingest_ticks_file(pool, path: str) -> dict:
    columns, chunks = open_ticks_file(path)
    name = os.path.basename(path)
    total: dict = {
        "batch_id": None,
        "rows_total": 0,
        "rows_landed": 0,
        "rows_unchanged": 0,
        "rows_rejected": 0,
        "rejects": [],
    }
    line_offset = 1  # the header is line 1
    with pool.connection() as conn:
        for chunk in chunks:
            res = ingest_chunk(conn, chunk, columns, name, total["batch_id"], line_offset)
            total["batch_id"] = res["batch_id"]
            for k in ("rows_total", "rows_landed", "rows_unchanged", "rows_rejected"):
                total[k] += int(res.get(k) or 0)
            total["rejects"] = (total["rejects"] + list(res.get("rejects") or []))[:20]
            line_offset += chunk.count(b"\n")
    log.info(
        "ingested ticks %s: landed=%s duplicates=%s rejected=%s",
        name,
        total["rows_landed"],
        total["rows_unchanged"],
        total["rows_rejected"],
    )
    return total
