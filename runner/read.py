"""Reading bars out: `tickagg bars` and ``tickagg.read_bars`` share one named
query (tickagg.bars_read), streamed through a server-side cursor so a year of
1-minute bars never sits in client memory at once."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import IO, Any
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg.rows import dict_row

from . import db, queries
from .errors import wrap_exceptions

BATCH_ROWS = 10_000

BAR_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("canonical_symbol", pa.string()),
    ("bucket", pa.timestamp("us", tz="UTC")),
    ("bucket_end", pa.timestamp("us", tz="UTC")),
    ("open", pa.float64()),
    ("high", pa.float64()),
    ("low", pa.float64()),
    ("close", pa.float64()),
    ("volume", pa.float64()),
    ("vwap", pa.float64()),
    ("trade_count", pa.int64()),
    ("source_candles", pa.int32()),
    ("expected_candles", pa.int32()),
    ("quality_score", pa.int16()),
    ("is_partial", pa.bool_()),
    ("is_filled", pa.bool_()),
)
TIME_COLUMNS = ("bucket", "bucket_end")


def arrow_schema(indicators: Sequence[str], tz: str = "UTC") -> pa.Schema:
    fields = [
        pa.field(name, pa.timestamp("us", tz=tz) if name in TIME_COLUMNS else kind)
        for name, kind in BAR_COLUMNS
    ]
    return pa.schema(fields + [pa.field(name, pa.float64()) for name in indicators])


def iter_bars(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    timeframe: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    indicators: Sequence[str] = (),
    include_open: bool = False,
    fill: str = "none",
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of bar rows in (symbol, bucket) order, each indicator a column of
    its own. Runs in a transaction of its own (a savepoint inside the caller's).
    fill: none, null or prev (see tickagg.bars_read)."""
    params = {
        "symbols": list(symbols),
        "timeframe": timeframe,
        "from": start,
        "to": end,
        "indicators": list(indicators) or None,
        "include_open": include_open,
        "fill": fill,
    }
    with wrap_exceptions(), conn.transaction():
        with conn.cursor(name="tickagg_bars_read", row_factory=dict_row) as cur:
            cur.itersize = batch_rows
            cur.execute(queries.BARS_READ, params)
            while rows := cur.fetchmany(batch_rows):
                for row in rows:
                    values = row.pop("indicators") or {}
                    row.update((name, values.get(name)) for name in indicators)
                yield rows


def _connect(dsn: str) -> psycopg.Connection:
    return db.connect(dsn, application_name="tickagg read_bars")


def read_bars(
    dsn_or_conn: str | psycopg.Connection,
    symbol: str | Sequence[str],
    timeframe: str,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    indicators: Sequence[str] | None = None,
    *,
    include_open: bool = False,
    fill: str = "none",
    engine: str = "pandas",
):
    """Bars as a DataFrame. One symbol (a string): indexed by bucket (tz-aware
    UTC); several (a list): indexed by (canonical_symbol, bucket). Prices float64,
    indicators one float64 column each. engine="polars" returns a polars
    DataFrame with canonical_symbol and bucket as columns. start/end: datetimes
    or ISO 8601 strings (UTC when no offset); end is exclusive. fill="null" or
    "prev": one row per bucket of open market time, a missing one empty or flat at
    the previous close with zero volume, flagged is_filled."""
    if engine not in ("pandas", "polars"):
        raise ValueError(f"engine must be 'pandas' or 'polars', not {engine!r}")
    symbols = [symbol] if isinstance(symbol, str) else list(symbol)
    names = list(indicators or ())
    conn = _connect(dsn_or_conn) if isinstance(dsn_or_conn, str) else dsn_or_conn
    try:
        batches = [
            pa.RecordBatch.from_pylist(rows, schema=arrow_schema(names))
            for rows in iter_bars(
                conn, symbols, timeframe, _as_time(start), _as_time(end), names, include_open, fill
            )
        ]
    finally:
        if conn is not dsn_or_conn:
            conn.close()
    table = pa.Table.from_batches(batches, schema=arrow_schema(names))
    if engine == "polars":
        import polars as pl

        return pl.from_arrow(table)
    import pandas as pd

    index = ["canonical_symbol", "bucket"]
    if isinstance(symbol, str):
        table, index = table.drop_columns(["canonical_symbol"]), ["bucket"]
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return frame.set_index(index)


def _as_time(value: dt.datetime | str | None) -> dt.datetime | None:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _in_zone(rows: list[dict], zone: ZoneInfo | None) -> list[dict]:
    if zone is not None:
        for row in rows:
            for name in TIME_COLUMNS:
                row[name] = row[name].astimezone(zone)
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def write_csv(
    batches: Iterator[list[dict]], out: IO[str], zone: ZoneInfo | None, indicators: Sequence[str]
) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in BAR_COLUMNS] + list(indicators))
    count = 0
    for rows in batches:
        writer.writerows([_text(v) for v in row.values()] for row in _in_zone(rows, zone))
        count += len(rows)
    return count


def write_json(
    batches: Iterator[list[dict]], out: IO[str], zone: ZoneInfo | None, indicators: Sequence[str]
) -> int:
    """One JSON array, written as the rows arrive."""
    count = 0
    out.write("[")
    for rows in batches:
        for row in _in_zone(rows, zone):
            out.write(",\n" if count else "\n")
            out.write(json.dumps(row, default=_text))
            count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_parquet(
    batches: Iterator[list[dict]], out, zone: ZoneInfo | None, indicators: Sequence[str]
) -> int:
    schema = arrow_schema(indicators, str(zone) if zone else "UTC")
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for rows in batches:
            writer.write_batch(pa.RecordBatch.from_pylist(_in_zone(rows, zone), schema=schema))
            count += len(rows)
    return count


TABLE_COLUMNS = (
    "canonical_symbol",
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "expected_candles",
    "source_candles",
    "is_partial",
    "is_filled",
)


def write_table(
    batches: Iterator[list[dict]], out: IO[str], zone: ZoneInfo | None, indicators: Sequence[str]
) -> int:
    """Aligned columns for a terminal, printed as rows arrive (widths fixed by
    the first batch; a wider value later just pushes its line)."""
    columns = [*TABLE_COLUMNS, *indicators]
    count = 0
    widths: dict[str, int] = {}
    for rows in batches:
        cells = [{c: _cell(row[c], zone) for c in columns} for row in _in_zone(rows, zone)]
        if not widths:
            widths = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
            out.write("  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
        for r in cells:
            out.write("  ".join(r[c].rjust(widths[c]) for c in columns).rstrip() + "\n")
        count += len(rows)
    return count


def _cell(value: Any, zone: ZoneInfo | None) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M %Z" if zone else "%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.10g}"
    return _text(value)
