"""Bar ingest: stream a CSV or Parquet file into a temp stage table with COPY,
then let ``tickagg.ingest_staged_bars`` validate and land it. Python only
moves text; every check (timestamps, NaN, ranges, unknown symbols,
duplicates) happens in SQL."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import logging
import math
import os
from collections.abc import Iterable, Iterator

from . import queries
from .errors import InputFormatError, wrap_exceptions

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("source", "vwap", "trade_count")
PARQUET_BATCH_ROWS = 65_536

# Stage row: (line_no, canonical_symbol, ts_utc, open, high, low, close, volume, source, vwap,
# trade_count)
StageRow = tuple


def _column_positions(header: list[str], path: str) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputFormatError(
            f"{path}: missing required column(s): {', '.join(missing)} "
            f"(header has: {', '.join(h.strip() for h in header) or 'nothing'}; "
            f"expected {', '.join(REQUIRED_COLUMNS)}[, source, vwap, trade_count])"
        )
    return {c: names.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in names}


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def iter_csv_rows(path: str) -> Iterator[StageRow]:
    """Yield stage rows; line_no is the physical line the record starts on
    (the header is line 1)."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFormatError(f"{path}: file is empty (no header)") from None
        pos = _column_positions(header, path)
        order = [pos.get(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        start = reader.line_num + 1
        for record in reader:
            line_no = start
            start = reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            values = []
            for i in order:
                v = record[i] if i is not None and i < len(record) else None
                values.append(v if v not in ("",) else None)
            yield (line_no, *values)


def _to_text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.isoformat()
    if isinstance(v, (dt.date, decimal.Decimal, int)):
        return str(v) if not isinstance(v, dt.date) else v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if hasattr(v, "isoformat"):  # pandas.Timestamp and friends
        return _to_text(v.to_pydatetime()) if hasattr(v, "to_pydatetime") else v.isoformat()
    return str(v)


def iter_parquet_rows(path: str) -> Iterator[StageRow]:
    """Yield stage rows batch by batch; line_no = row number + 1 (as if the
    file had a header line)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = list(pf.schema_arrow.names)
    pos = _column_positions(names, path)
    wanted = [names[pos[c]] if c in pos else None for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    line_no = 1
    for batch in pf.iter_batches(
        batch_size=PARQUET_BATCH_ROWS, columns=[w for w in wanted if w is not None]
    ):
        cols = []
        for w in wanted:
            if w is None:
                cols.append([None] * batch.num_rows)
            else:
                cols.append(batch.column(batch.schema.get_field_index(w)).to_pylist())
        for values in zip(*cols, strict=True):
            line_no += 1
            yield (line_no, *(_to_text(v) for v in values))


def iter_file_rows(path: str) -> Iterator[StageRow]:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq", ".parq")):
        return iter_parquet_rows(path)
    if lower.endswith((".csv", ".csv.gz", ".txt")):
        return iter_csv_rows(path)
    raise InputFormatError(f"{path}: unknown file type (expected .csv, .csv.gz or .parquet)")


def ingest_rows(
    conn, rows: Iterable[StageRow], file_name: str, default_source: str | None = None
) -> dict:
    """Stage rows with COPY and land them, all in ONE transaction."""
    with conn.transaction():
        queries.create_bars_stage(conn)
        with wrap_exceptions(), conn.cursor() as cur:
            with cur.copy(queries.COPY_BARS_STAGE) as copy:
                for row in rows:
                    copy.write_row(row)
        return queries.ingest_staged_bars(conn, file_name, default_source)


def ingest_bars_file(pool, path: str, default_source: str | None = None) -> dict:
    if not os.path.exists(path):
        raise InputFormatError(f"{path}: no such file")
    rows = iter_file_rows(path)
    # Read the header before opening a transaction so format errors are
    # reported without touching the database.
    first = next(rows, None)
    chained = rows if first is None else _prepend(first, rows)
    with pool.connection() as conn:
        result = ingest_rows(conn, chained, os.path.basename(path), default_source)
    log.info(
        "ingested %s: landed=%s unchanged=%s rejected=%s",
        os.path.basename(path),
        result.get("rows_landed"),
        result.get("rows_unchanged"),
        result.get("rows_rejected"),
    )
    return result


def _prepend(first, rest):
    yield first
    yield from rest


def format_result(result: dict, rejects_view: str = "tickagg.ingest_rejects_recent") -> str:
    out = io.StringIO()
    out.write(
        f"batch {result.get('batch_id')}: {result.get('rows_total', 0)} rows, "
        f"{result.get('rows_landed', 0)} landed, "
        f"{result.get('rows_unchanged', 0)} unchanged, "
        f"{result.get('rows_rejected', 0)} rejected\n"
    )
    rejects = result.get("rejects") or []
    for r in rejects[:20]:
        out.write(f"  line {r.get('line_no')}: {r.get('reason')}\n")
    more = (result.get("rows_rejected") or 0) - len(rejects[:20])
    if more > 0:
        out.write(f"  ... and {more} more (see view {rejects_view})\n")
    return out.getvalue()
