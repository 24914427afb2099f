"""A data file as chunks of CSV lines for COPY, shared by bar and tick ingest.

Python never parses a record on this path: a CSV file's bytes are cut at line
ends into chunks of about CHUNK_BYTES, a Parquet file is written out as CSV
batch by batch (pyarrow), and each chunk goes straight into COPY (FORMAT csv)
of a temp stage. Only a chunk that does not COPY is re-read record by record
(``records``), so its bad rows are judged with their line numbers."""

from __future__ import annotations

import csv
import gzip
import io
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

import psycopg

from .errors import InputFormatError

CHUNK_BYTES = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 250_000
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")


class MisalignedChunk(Exception):
    """A chunk COPYed into fewer rows than it has lines (a quoted line break):
    its row numbers would not be line numbers."""


def open_binary(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115


def file_kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputFormatError(f"{path}: unknown file type (expected .csv, .csv.gz or .parquet)")


def csv_header(path: str) -> list[str]:
    with open_binary(path) as fh:
        header_line = fh.readline().decode("utf-8-sig")
    if not header_line.strip():
        raise InputFormatError(f"{path}: file is empty (no header)")
    return next(csv.reader([header_line]))


def csv_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The lines after the header, in chunks of about chunk_bytes that each end at
    the end of a record (a line end outside quotes)."""
    with open_binary(path) as fh:
        fh.readline()  # the header
        rest = b""
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if rest.strip():
                    yield rest if rest.endswith(b"\n") else rest + b"\n"
                return
            block = rest + block
            cut = record_end(block)
            if cut < 0 and len(block) >= 4 * chunk_bytes:  # a stray quote: see record_end
                cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            rest = block[cut + 1 :]
            yield block[: cut + 1]


def record_end(block: bytes) -> int:
    """The offset of the last line end of block that ends a record, or -1. block
    starts at a record's start. A line end inside a quoted field (an odd number of
    quotes before it: a quote inside quotes is doubled) does not end a record, as
    COPY (FORMAT csv) reads it. (A file whose quotes never balance again, a stray
    quote, is cut at its last line end anyway once the block is 4 chunks long, so
    memory stays bounded: COPY rejects that chunk and it is re-read row by row.)"""
    cut = block.rfind(b"\n")
    quotes = block.count(b'"', 0, cut)
    while cut >= 0 and quotes % 2:
        earlier = block.rfind(b"\n", 0, cut)
        quotes -= block.count(b'"', earlier + 1, cut)
        cut = earlier
    return cut


def parquet_names(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(path).schema_arrow.names)


def parquet_chunks(path: str, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[bytes]:
    """Each batch of rows as CSV lines without header, one line per row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = list(pf.schema_arrow.names)
    for batch in pf.iter_batches(batch_size=batch_rows):
        arrays = [_as_csv_text(col) for col in batch.columns]
        buf = io.BytesIO()
        pacsv.write_csv(
            pa.RecordBatch.from_arrays(arrays, names=names),
            buf,
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        yield buf.getvalue()


def _as_csv_text(col):
    """A column as pyarrow should write it for the stage: timestamps in UTC with
    an explicit offset (whole seconds without a fraction, as most files write
    them), non-finite floats spelled as PostgreSQL and Python spell them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:  # zone-less values are UTC
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
        try:
            return col.cast(pa.timestamp("s", tz="UTC"))
        except pa.ArrowInvalid:  # fractions of a second
            return col.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_floating(col.type) and not pc.all(pc.is_finite(col), skip_nulls=True).as_py():
        text = pc.replace_substring_regex(col.cast(pa.string()), "^(-?)inf$", r"\1Infinity")
        return pc.replace_substring(text, "nan", "NaN")
    return col


def read_ahead(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The same chunks, the next one read (a Parquet batch written as CSV, a CSV
    block cut) in a thread while the database lands the current one: on 2 cores
    that work no longer adds to the ingest's time. One chunk ahead at most, so
    memory stays flat. The thread starts on the first chunk asked for and stops
    when the consumer stops; its errors are raised here."""
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        """Hand item over unless the consumer stopped; False when it did."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    reader = threading.Thread(target=produce, name="tickagg-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def copy_chunk(conn: psycopg.Connection, copy_sql, chunk: bytes) -> None:
    """COPY one chunk; DataError (or MisalignedChunk) when it does not COPY row for line."""
    with conn.cursor() as cur:
        with cur.copy(copy_sql) as cp:
            cp.write(chunk)
        if cur.rowcount != chunk.count(b"\n"):
            raise MisalignedChunk


def records(chunk: bytes, line_offset: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank record of a chunk, read by Python;
    a record's line is the physical line it starts on."""
    reader = csv.reader(io.StringIO(chunk.decode("utf-8", "replace"), newline=""))
    start = 1
    for record in reader:
        line_no = line_offset + start
        start = reader.line_num + 1
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        yield line_no, record


def stage_chunk(
    conn: psycopg.Connection,
    chunk: bytes,
    line_offset: int,
    create_stage: Callable[[], None],
    copy_sql,
    write_records: Callable[[Iterator[tuple[int, list[str]]]], None],
) -> bool:
    """Stage a chunk in the caller's transaction: COPY it straight in, or (when it
    does not COPY) re-read it and let write_records stage its records. True when
    the chunk was re-read."""
    try:
        with conn.transaction():  # savepoint: a chunk that does not COPY is re-read
            create_stage()
            copy_chunk(conn, copy_sql, chunk)
        return False
    except (psycopg.errors.DataError, MisalignedChunk) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "a quoted line break"
        log_reread(line_offset, first)
        create_stage()
        write_records(records(chunk, line_offset))
        return True


def log_reread(line_offset: int, why: str) -> None:
    import logging

    logging.getLogger(__name__).info(
        "chunk after line %s did not COPY (%s); re-reading it row by row", line_offset, why
    )


COUNTERS = ("rows_total", "rows_landed", "rows_unchanged", "rows_outranked", "rows_rejected")


def land_chunks(
    chunks: Iterable[bytes],
    land: Callable[[bytes, int | None, int], dict],
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Land a file chunk by chunk: land(chunk, batch_id, line_offset) commits one
    chunk and returns its counts; the first chunk's batch id is passed on to the
    next, so one file is one ingest batch. Returns the file's totals (the first 20
    rejects) and reports them to progress after every chunk."""
    total: dict = {"batch_id": None, **dict.fromkeys(COUNTERS, 0), "rejects": []}
    started = time.monotonic()
    line_offset = 1  # the header is line 1
    for chunk in chunks:
        res = land(chunk, total["batch_id"], line_offset)
        total["batch_id"] = res["batch_id"]
        for k in COUNTERS:
            total[k] += int(res.get(k) or 0)
        total["rejects"] = (total["rejects"] + list(res.get("rejects") or []))[:20]
        line_offset += chunk.count(b"\n")
        if progress is not None:
            progress({**total, "seconds": time.monotonic() - started})
    return total


def land_chunks_in_parts(
    chunks: Iterable[bytes],
    parts: int,
    open_part: Callable[[int], AbstractContextManager[Callable[[bytes, int], dict]]],
    batch_id: int,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Land a file with `parts` sessions at once: every chunk goes to every part,
    and part i (a thread holding the session open_part(i) opens) lands its share of
    each chunk, in file order, by calling land(chunk, line_offset). Each part is at
    most two chunks behind the reader, so memory stays flat; the first error of a
    part stops the others after their current chunk and is raised here. Returns the
    file's totals (the 20 rejects with the lowest lines) and reports them to
    progress after every landed share."""
    total: dict = {"batch_id": batch_id, **dict.fromkeys(COUNTERS, 0), "rejects": []}
    started = time.monotonic()
    counted = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    inboxes: list[queue.Queue] = [queue.Queue(maxsize=2) for _ in range(parts)]

    def work(part: int) -> None:
        try:
            with open_part(part) as land:
                while (item := inboxes[part].get()) is not None:
                    if stop.is_set():
                        continue  # drained until the reader's end mark
                    res = land(*item)
                    with counted:
                        for k in COUNTERS:
                            total[k] += int(res.get(k) or 0)
                        rejects = total["rejects"] + list(res.get("rejects") or [])
                        total["rejects"] = sorted(rejects, key=lambda r: r.get("line_no") or 0)[:20]
                        if progress is not None:
                            progress({**total, "seconds": time.monotonic() - started})
        except BaseException as exc:  # raised by the reader once every part stopped
            errors.append(exc)
            stop.set()

    workers = [
        threading.Thread(target=work, args=(i,), name=f"tickagg-part-{i}", daemon=True)
        for i in range(parts)
    ]
    for w in workers:
        w.start()

    def hand(part: int, item) -> None:
        """Put item in a part's inbox unless that part has ended (it failed)."""
        while workers[part].is_alive():
            try:
                inboxes[part].put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    try:
        line_offset = 1  # the header is line 1
        for chunk in chunks:
            if stop.is_set():
                break
            for part in range(parts):
                hand(part, (chunk, line_offset))
            line_offset += chunk.count(b"\n")
    except BaseException:
        stop.set()
        raise
    finally:
        for part in range(parts):
            hand(part, None)
        for w in workers:
            w.join()
    if errors:
        raise errors[0]
    return total
