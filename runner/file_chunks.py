"""A data file as chunks of CSV lines for COPY, shared by bar and tick ingest.

Python never parses a record on this path: a CSV file's bytes are cut at line
ends into chunks of about CHUNK_BYTES, a Parquet file is written out as CSV
batch by batch (pyarrow), and each chunk goes straight into COPY (FORMAT csv)
of a temp stage. Only a chunk that does not COPY is re-read record by record
(``records``), so its bad rows are judged with their line numbers."""

from __future__ import annotations

import contextlib
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
RAW_LINE_CHARS = 1000  # of an unreadable line, kept with its reject


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
        try:
            header_line = fh.readline().decode("utf-8-sig")
        except (UnicodeDecodeError, OSError, EOFError) as exc:  # (OSError: not gzip)
            raise InputFormatError(f"{path}: line 1: not a CSV header ({_why(exc)})") from None
    if not header_line.strip():
        raise InputFormatError(f"{path}: file is empty (no header)")
    if "\x00" in header_line:
        raise InputFormatError(f"{path}: line 1: not a CSV header (a NUL byte)")
    try:
        return next(csv.reader([header_line]))
    except csv.Error as exc:
        raise InputFormatError(f"{path}: line 1: not a CSV header ({exc})") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8 text"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def csv_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The lines after the header, in chunks of about chunk_bytes that each end at
    the end of a record (a line end outside quotes)."""
    with open_binary(path) as fh:
        fh.readline()  # the header
        rest = b""
        lines_read = 1
        while True:
            try:
                block = fh.read(chunk_bytes)
            except (OSError, EOFError) as exc:  # a .gz cut short or corrupt
                raise InputFormatError(
                    f"{path}: cannot be read after line {lines_read} ({_why(exc)});"
                    " the lines up to it have been ingested"
                ) from None
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
            lines_read += block.count(b"\n", 0, cut + 1)
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

    with _parquet_errors(path, "its schema"):
        return list(pq.ParquetFile(path).schema_arrow.names)


@contextlib.contextmanager
def _parquet_errors(path: str, where: str) -> Iterator[None]:
    """pyarrow's errors on a corrupt, truncated or non-Parquet file as one line
    (InputFormatError: exit 2), not a traceback."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputFormatError(
            f"{path}: not a readable Parquet file at {where} ({_why(exc)})"
        ) from None


def parquet_chunks(path: str, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[bytes]:
    """Each batch of rows as CSV lines without header, one line per row. A batch that
    cannot be read ends the file with InputFormatError naming the rows before it;
    the batches before it have landed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with _parquet_errors(path, "its schema"):
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
    batches = pf.iter_batches(batch_size=batch_rows)
    rows_read = 0
    while True:
        with _parquet_errors(path, f"the rows after row {rows_read}"):
            batch = next(batches, None)
            if batch is None:
                return
            arrays = [_as_csv_text(col) for col in batch.columns]
        buf = io.BytesIO()
        pacsv.write_csv(
            pa.RecordBatch.from_arrays(arrays, names=names),
            buf,
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        rows_read += batch.num_rows
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


def records(chunk: bytes, line_offset: int) -> Iterator[tuple[int, list[str], str | None]]:
    """(line number, fields, problem) of every non-blank record of a chunk, read by
    Python; a record's line is the physical line it starts on. A record that cannot
    be read has a problem (bytes that are not UTF-8 text, a NUL byte, a field over
    csv's limit, a quote never closed) and, for its only field, its line's text
    (such bytes replaced, cut at RAW_LINE_CHARS); reading goes on at the next line,
    so the records around it are kept."""
    lines = chunk.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    texts: list[str | None] = []
    problems: dict[int, str] = {}
    for i, raw in enumerate(lines):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text, problems[i] = None, _why(exc)
        if text is not None and "\x00" in text:
            text, problems[i] = None, "a NUL byte"
        texts.append(text)

    def feed(start: int) -> Iterator[str]:
        for j in range(start, len(texts)):  # (not a slice: one per record is quadratic)
            if texts[j] is None:
                return  # a record cannot run on through an unreadable line
            yield texts[j] + "\n"

    def unreadable(i: int, problem: str) -> tuple[int, list[str], str]:
        raw = lines[i][: RAW_LINE_CHARS * 4].decode("utf-8", "replace").replace("\x00", "\ufffd")
        return line_offset + i + 1, [raw[:RAW_LINE_CHARS]], f"line is not readable: {problem}"

    def blank(record: list[str] | None) -> bool:
        return not record or (len(record) == 1 and not record[0].strip())

    i = 0
    while i < len(lines):
        if i in problems:
            yield unreadable(i, problems[i])
            i += 1
            continue
        # one reader for as long as the lines read; a record it cannot read is read
        # again alone (_one_record), and a new reader starts after it
        reader = csv.reader(feed(i), strict=True)
        base = i
        while True:
            start = base + reader.line_num  # the line the next record starts on
            try:
                record = next(reader)
            except StopIteration:
                i = base + reader.line_num
                break
            except csv.Error:
                try:
                    record, used = _one_record(lambda s=start: feed(s))
                except _Unreadable as exc:
                    yield unreadable(start, str(exc))
                    i = start + 1
                    break
                if not blank(record):
                    yield line_offset + start + 1, record, None
                i = start + max(used, 1)
                break
            if not blank(record):
                yield line_offset + start + 1, record, None


class _Unreadable(Exception):
    """A record csv cannot read (the message says why)."""


def _one_record(lines: Callable[[], Iterator[str]]) -> tuple[list[str] | None, int]:
    """The first record of lines() and how many lines it took. Read strictly first,
    only to tell a quote never closed (strict: "unexpected end of data") from a
    field that runs on over lines; strict's other complaints (text after a closing
    quote) are read leniently, as this reader always read them."""
    for strict in (True, False):
        reader = csv.reader(lines(), strict=strict)
        try:
            return next(reader, None), reader.line_num
        except csv.Error as exc:
            if "end of data" in str(exc) or ("field limit" in str(exc) and reader.line_num > 1):
                raise _Unreadable("a quoted field is never closed") from None
            if "field limit" in str(exc):
                raise _Unreadable(
                    f"a field is longer than {csv.field_size_limit():,} characters"
                ) from None
            if not strict:
                raise _Unreadable(str(exc)) from None
    raise AssertionError("unreachable: the lenient pass returns or raises")


def stage_chunk(
    conn: psycopg.Connection,
    chunk: bytes,
    line_offset: int,
    create_stage: Callable[[], None],
    copy_sql,
    write_records: Callable[[Iterator[tuple[int, list[str], str | None]]], None],
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
