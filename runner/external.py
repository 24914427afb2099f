"""External data (seeds/001) into ClickHouse: validated file ingest, the market
sessions snapshot from tickagg's own calendars, and the retention setting.

Files are streamed (CSV with a header, or JSON Lines of objects). Each row is
checked in Python against the table's declared schema below; good rows are
inserted in batches with clickhouse-connect's insert() (values never enter SQL
text), bad ones are printed with their line and reason and kept in the
ClickHouse table `external_rejects`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InputFormatError, TickaggError

BATCH_ROWS = 10_000
TTL_TABLES = (
    "external_economic_calendar",
    "external_fred_economic",
    "external_crypto_sentiment",
    "external_fear_greed_index",
    "external_commodity_prices",
    "external_market_sessions",
    "external_rejects",
)


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # str date datetime float uint
    required: bool = True
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None


def _req(name, kind="str", **kw) -> Col:
    return Col(name, kind, True, **kw)


def _opt(name, kind="str", **kw) -> Col:
    return Col(name, kind, False, **kw)


SCHEMAS: dict[str, tuple[Col, ...]] = {
    "external_economic_calendar": (
        _req("date", "date"),
        _req("time"),
        _req("currency"),
        _req("event"),
        _opt("forecast"),
        _opt("previous"),
        _opt("actual"),
        _req("impact", choices=("low", "medium", "high", "holiday", "none")),
        _req("source"),
        _req("collected_at", "datetime"),
    ),
    "external_fred_economic": (
        _req("series_id"),
        _req("value", "float"),
        _req("observation_date", "date"),
        _req("source"),
        _req("collected_at", "datetime"),
    ),
    "external_crypto_sentiment": (
        _req("coin_id"),
        _req("name"),
        _req("symbol"),
        _req("price_usd", "float", lo=0),
        _opt("price_change_24h", "float"),
        _opt("market_cap_rank", "uint", lo=1, hi=2**32 - 1),
        _opt("sentiment_votes_up", "float", lo=0, hi=100),
        _opt("community_score", "float", lo=0),
        _opt("twitter_followers", "uint", lo=0, hi=2**63),
        _opt("reddit_subscribers", "uint", lo=0, hi=2**63),
        _req("source"),
        _req("collected_at", "datetime"),
    ),
    "external_fear_greed_index": (
        _req("value", "uint", lo=0, hi=100),
        _req("classification"),
        _req("sentiment_score", "float", lo=-100, hi=100),
        _req("index_timestamp", "datetime"),
        _req("source"),
        _req("collected_at", "datetime"),
    ),
    "external_commodity_prices": (
        _req("symbol"),
        _req("name"),
        _req("currency"),
        _req("price", "float", lo=0),
        _opt("previous_close", "float", lo=0),
        _opt("change", "float"),
        _opt("change_percent", "float"),
        _opt("volume", "float", lo=0),
        _req("source"),
        _req("collected_at", "datetime"),
    ),
}


class RowError(ValueError):
    pass


def _parse_datetime(v) -> dt.datetime:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v) or not 0 <= v < 4102444800:
            raise RowError("epoch seconds out of range")
        return dt.datetime.fromtimestamp(v, dt.UTC).replace(tzinfo=None)
    s = str(v).strip()
    if s.isdigit():
        return _parse_datetime(int(s))
    try:
        ts = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise RowError("not an ISO 8601 timestamp or epoch seconds") from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    if not dt.datetime(1970, 1, 1) <= ts < dt.datetime(2100, 1, 1):
        raise RowError("timestamp outside 1970..2099")
    return ts


def _convert(col: Col, v):
    if col.kind == "str":
        if isinstance(v, (dict, list)):
            raise RowError("an object or array where text belongs")
        s = str(v).strip()
        if "\x00" in s:
            raise RowError("contains a NUL byte")
        if col.choices and s.lower() not in col.choices:
            raise RowError(f"expected one of {', '.join(col.choices)}")
        return s.lower() if col.choices else s
    if col.kind == "date":
        try:
            d = dt.date.fromisoformat(str(v).strip())
        except ValueError:
            raise RowError("not a date (YYYY-MM-DD)") from None
        if not dt.date(1970, 1, 1) <= d < dt.date(2100, 1, 1):
            raise RowError("date outside 1970..2099")
        return d
    if col.kind == "datetime":
        return _parse_datetime(v)
    if isinstance(v, bool):
        raise RowError("not a number")
    if col.kind == "float":
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise RowError("not a number") from None
        if not math.isfinite(x):
            raise RowError("not a finite number")
    else:  # uint
        try:
            x = int(v) if isinstance(v, float) and v.is_integer() else int(str(v).strip())
        except (ValueError, OverflowError):
            x = None
        if x is None:
            raise RowError("not an integer")
    if col.lo is not None and x < col.lo:
        raise RowError(f"below {col.lo:g}")
    if col.hi is not None and x > col.hi:
        raise RowError(f"above {col.hi:g}")
    return x


def validate(table: str, record: dict) -> list:
    """The row for insert() in SCHEMAS order, or RowError naming the field."""
    schema = SCHEMAS[table]
    unknown = sorted(set(record) - {c.name for c in schema})
    if unknown:
        raise RowError(f"unknown field(s): {', '.join(unknown)}")
    out = []
    for col in schema:
        v = record.get(col.name)
        if v is None or (isinstance(v, str) and not v.strip()):
            if col.required:
                raise RowError(f"{col.name}: required")
            out.append(None)
            continue
        try:
            out.append(_convert(col, v))
        except RowError as exc:
            raise RowError(f"{col.name}: {exc} ({str(v)[:60]!r})") from None
    return out


NOT_UTF8 = "not UTF-8 text"


def _undecodable(text: str) -> bool:
    """A file is read with errors="surrogateescape", so that a stray byte costs its
    own line (a reject) instead of the whole file (a UnicodeDecodeError)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str) -> str:
    """The raw text of a rejected line, its undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _iter_records(path: str, table: str) -> Iterator[tuple[int, object, str]]:
    """(line_no, dict-or-error-text, raw text) per record; CSV header is line 1."""
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if _undecodable(line):
                    yield n, NOT_UTF8, _printable(line.rstrip("\n"))
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, f"not JSON: {exc.msg}", line.rstrip("\n")
                    continue
                yield n, obj if isinstance(obj, dict) else "not a JSON object", line.rstrip("\n")
        return
    if not lower.endswith(".csv"):
        raise InputFormatError(f"{path}: unknown file type (expected .csv or .jsonl)")
    with open(path, encoding="utf-8-sig", newline="", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise InputFormatError(f"{path}: file is empty (no header)")
        names = {c.name for c in SCHEMAS[table]}
        missing = [c.name for c in SCHEMAS[table] if c.required and c.name not in header]
        unknown = [h for h in header if h not in names]
        if missing or unknown:
            raise InputFormatError(
                f"{path}: header does not match {table}: missing {missing or 'nothing'},"
                f" unknown {unknown or 'nothing'} (columns: {', '.join(sorted(names))})"
            )
        start = reader.line_num + 1
        for record in reader:
            line_no, start = start, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            raw = ",".join(record)
            if _undecodable(raw):
                yield line_no, NOT_UTF8, _printable(raw)
                continue
            if len(record) != len(header):
                yield line_no, f"{len(record)} fields, header has {len(header)}", raw
                continue
            yield line_no, dict(zip(header, record, strict=True)), raw


def ingest_file(client, table: str, path: str, batch_rows: int = BATCH_ROWS) -> dict:
    """Validate and insert FILE into TABLE; rejects go to `external_rejects`."""
    if table not in SCHEMAS:
        raise InputFormatError(
            f"unknown external table {table!r} (one of {', '.join(sorted(SCHEMAS))};"
            " external_market_sessions comes from `tickagg external sessions-snapshot`)"
        )
    if not os.path.exists(path):
        raise InputFormatError(f"{path}: no such file")
    columns = [c.name for c in SCHEMAS[table]]
    collected_at = columns.index("collected_at")
    retention = retention_days(client, table)
    # ClickHouse drops a row whose TTL has passed at once: refuse it here instead
    oldest_kept = (
        None
        if retention is None
        else dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=retention)
    )
    name = os.path.basename(path)
    good: list[list] = []
    bad: list[list] = []
    res = {"table": table, "file": name, "rows_total": 0, "rows_inserted": 0, "rejects": []}

    def flush(final: bool = False) -> None:
        if good and (final or len(good) >= batch_rows):
            try:
                client.insert(table, good, column_names=columns)
            except Exception as exc:  # noqa: BLE001 - the driver's errors, reported as ours
                raise TickaggError(f"ClickHouse refused rows of {name}: {exc}") from exc
            res["rows_inserted"] += len(good)
            good.clear()
        if bad and (final or len(bad) >= batch_rows):
            client.insert(
                "external_rejects", bad, column_names=["table_name", "file_name", "line_no",
                                                       "reason", "raw"]
            )  # fmt: skip
            bad.clear()

    for line_no, record, raw in _iter_records(path, table):
        res["rows_total"] += 1
        try:
            if isinstance(record, str):
                raise RowError(record)
            row = validate(table, record)
            if oldest_kept is not None and row[collected_at] < oldest_kept:
                raise RowError(
                    f"collected_at {row[collected_at]:%Y-%m-%d %H:%M:%S} is older than the"
                    f" {retention}-day retention of {table}: ClickHouse would drop the row at once"
                    " (raise it first: tickagg external set-ttl DAYS)"
                )
            good.append(row)
        except RowError as exc:
            res["rejects"].append({"line_no": line_no, "reason": str(exc)})
            bad.append([table, name, line_no, str(exc), raw[:4000]])
        flush()
    flush(final=True)
    res["rows_rejected"] = len(res["rejects"])
    return res


def format_result(res: dict, limit: int = 20) -> str:
    lines = [
        f"{res['table']} <- {res['file']}: {res['rows_total']} rows, "
        f"{res['rows_inserted']} inserted, {res['rows_rejected']} rejected"
    ]
    lines += [f"  line {r['line_no']}: {r['reason']}" for r in res["rejects"][:limit]]
    if res["rows_rejected"] > limit:
        lines.append(f"  ... and {res['rows_rejected'] - limit} more (table external_rejects)")
    return "\n".join(lines) + "\n"


# --- market sessions -------------------------------------------------------------

ACTIVE_SESSIONS_SQL = """
SELECT c.calendar_code
FROM tickagg.market_calendars AS c
CROSS JOIN LATERAL tickagg.calendar_sessions(
    c.calendar_code, %(at)s::timestamptz, %(at)s::timestamptz + interval '1 microsecond'
) AS s
WHERE s.is_trading AND s.open_utc <= %(at)s::timestamptz AND s.close_utc > %(at)s::timestamptz
ORDER BY c.calendar_code
"""


def liquidity_level(active: list[str]) -> str:
    """closed (nothing trades), low (one session: crypto alone overnight), medium (two),
    high (three or more overlap, e.g. forex + crypto + an equity session)."""
    return {0: "closed", 1: "low", 2: "medium"}.get(len(active), "high")


def sessions_at(conn, at: dt.datetime) -> dict:
    rows = conn.execute(ACTIVE_SESSIONS_SQL, {"at": at}).fetchall()
    active = [r["calendar_code"] if isinstance(r, dict) else r[0] for r in rows]
    return {
        "active_sessions_count": len(active),
        "active_sessions": active,
        "liquidity_level": liquidity_level(active),
        "collected_at": at.astimezone(dt.UTC).replace(tzinfo=None),
    }


def sessions_snapshot(conn, client, at: dt.datetime | None = None) -> dict:
    """Active calendar sessions at `at` (default: PostgreSQL's now()), inserted as one
    external_market_sessions row."""
    if at is None:
        at = conn.execute("SELECT now() AS t").fetchone()
        at = at["t"] if isinstance(at, dict) else at[0]
    snap = sessions_at(conn, at)
    cols = ["active_sessions_count", "active_sessions", "liquidity_level", "collected_at"]
    client.insert("external_market_sessions", [[snap[c] for c in cols]], column_names=cols)
    return snap


# --- retention --------------------------------------------------------------------


def retention_days(client, table: str) -> int | None:
    """The days a table keeps a row after its collected_at (its TTL), None without one."""
    ddl = client.command(f"SHOW CREATE TABLE {table}")  # table: a SCHEMAS key
    found = _TTL_DAYS.search(str(ddl))
    return int(found.group(1)) if found else None


_TTL_DAYS = re.compile(r"TTL\s+toDateTime\(collected_at\)\s*\+\s*toIntervalDay\((\d+)\)")


def set_ttl(client, days: int) -> list[str]:
    """Retention of every external table: rows go `days` after collected_at. At most
    10,000 days: TTL expressions are DateTime, which ends in 2106 (a TTL beyond it
    wraps around and would drop every row on insert)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 10000:
        raise TickaggError(f"TTL days must be an integer 1..10000, got {days!r}")
    done = []
    for t in TTL_TABLES:
        col = "rejected_at" if t == "external_rejects" else "collected_at"
        # identifiers from the constant list above, days a validated int
        client.command(f"ALTER TABLE {t} MODIFY TTL toDateTime({col}) + INTERVAL {days:d} DAY")
        done.append(t)
    return done
