"""The SQL the runner sends, by name.

Each query calls ONE tickagg function (or reads one view) with NAMED
arguments, except AGG_RUN_ROLLUP_AND_CLAIM (a run and the next claim in one round
trip); values always travel as parameters. Helpers take a connection and
return dict rows; the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from .errors import wrap_exceptions

# --- tasks -----------------------------------------------------------------

GET_DUE_TASKS = """
SELECT * FROM tickagg.agg_get_due_tasks(
    p_env => %(env)s,
    p_now => COALESCE(%(now)s::timestamptz, clock_timestamp()),
    p_limit => %(limit)s,
    p_lease_seconds => %(lease_seconds)s)
"""

# the runner's claim: the head of the queue, and for a live rollup or indicators head
# a batch of due tasks of its kind and timeframe (p_batch_size NULL: the rollup_batch_size setting)
CLAIM_BATCH = """
SELECT * FROM tickagg.agg_claim_batch(
    p_env => %(env)s,
    p_now => clock_timestamp(),
    p_lease_seconds => %(lease_seconds)s,
    p_batch_size => %(batch_size)s)
"""

NEXT_DUE_AT = "SELECT tickagg.agg_next_due_at(p_env => %(env)s) AS next_due_at"

CATCHUP_AGGREGATION_RANGE = """
SELECT tickagg.catchup_aggregation_range(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_cursor => %(cursor)s,
    p_max_windows => %(max_windows)s) AS result
"""

# catch-up + agg_finish + run log: one statement, so one transaction
AGG_RUN_ROLLUP = """
SELECT tickagg.agg_run_rollup(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_claim_token => %(claim_token)s,
    p_cursor => %(cursor)s,
    p_run_id => %(run_id)s,
    p_started_at => %(started_at)s,
    p_max_windows => %(max_windows)s) AS result
"""

# The run, then the runner's next claim (agg_claim_batch: a task, or a batch) in
# the same statement and transaction: one round trip per task instead of two. The
# claim sees what the run queued (the level above made due). run.result in the
# claim's arguments (never NULL: the CASE is only there to name it) makes the
# claim a lateral call, made after the run; a run that raises claims nothing. The two stand or fall
# together: a claim that fails (a timeout inside it) rolls the run back too, and a
# reply lost after the commit (the connection drops) leaves the claimed task
# running until its lease expires, as for any claim whose reply is lost.
AGG_RUN_ROLLUP_AND_CLAIM = (
    sql.SQL("""
WITH run AS MATERIALIZED ({run})
SELECT run.result, claimed.*
FROM run
LEFT JOIN LATERAL tickagg.agg_claim_batch(
    p_env => %(env)s,
    p_now => CASE WHEN run.result IS NOT NULL THEN clock_timestamp() END,
    p_lease_seconds => %(lease_seconds)s,
    p_batch_size => %(batch_size)s) AS claimed ON true
""")
    .format(run=sql.SQL(AGG_RUN_ROLLUP))
    .as_string()
)  # composed once, at import

# A claimed batch of rollup tasks of one timeframe: fenced, materialised, finished
# and logged per task, in one statement (so one transaction); a row per task
AGG_RUN_ROLLUP_BATCH = """
SELECT * FROM tickagg.agg_run_rollup_batch(
    p_timeframe => %(timeframe)s,
    p_canonical_symbols => %(symbols)s,
    p_claim_tokens => %(claim_tokens)s,
    p_cursors => %(cursors)s,
    p_run_ids => %(run_ids)s,
    p_started_at => %(started_at)s,
    p_max_windows => %(max_windows)s)
"""

# A claimed batch of indicators tasks of one timeframe: fenced, indicators_step per
# series, finished and logged per task, in one statement; a row per task
AGG_RUN_INDICATORS_BATCH = """
SELECT * FROM tickagg.agg_run_indicators_batch(
    p_timeframe => %(timeframe)s,
    p_canonical_symbols => %(symbols)s,
    p_claim_tokens => %(claim_tokens)s,
    p_cursors => %(cursors)s,
    p_run_ids => %(run_ids)s,
    p_started_at => %(started_at)s,
    p_max_bars => %(max_windows)s)
"""

AGG_RUN_TICKS_BATCH = """
SELECT * FROM tickagg.agg_run_ticks_batch(
    p_canonical_symbols => %(symbols)s,
    p_claim_tokens => %(claim_tokens)s,
    p_cursors => %(cursors)s,
    p_run_ids => %(run_ids)s,
    p_started_at => %(started_at)s,
    p_max_windows => %(max_windows)s)
"""

INDICATORS_STEP = """
SELECT tickagg.indicators_step(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_cursor => %(cursor)s,
    p_max_bars => %(max_bars)s) AS result
"""

AGG_FINISH = """
SELECT tickagg.agg_finish(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_task_kind => %(task_kind)s,
    p_claim_token => %(claim_token)s,
    p_outcome => %(outcome)s,
    p_cursor_from => %(cursor_from)s,
    p_cursor_to => %(cursor_to)s,
    p_error => %(error)s,
    p_bars_written => %(bars_written)s,
    p_continue => %(continue)s) AS result
"""

SET_STATEMENT_TIMEOUT = (
    "SELECT set_config('statement_timeout', %(timeout)s, true) AS statement_timeout"
)

LISTEN_WORK = "LISTEN tickagg_work"

# --- registry --------------------------------------------------------------

SYNC_AGG_STATE_FROM_REGISTRY = """
SELECT tickagg.sync_agg_state_from_registry(
    p_env => %(env)s,
    p_start => %(start)s) AS result
"""

REGISTER_SYMBOL = """
SELECT tickagg.register_symbol(
    p_canonical_symbol => %(symbol)s,
    p_calendar_code => %(calendar)s,
    p_asset_class => %(asset_class)s,
    p_source_kind => %(source_kind)s,
    p_is_mandatory => %(is_mandatory)s,
    p_price_kind => %(price_kind)s,
    p_active => %(active)s,
    p_test_active => %(test_active)s) AS result
"""

LIST_SYMBOLS = "SELECT * FROM tickagg.asset_registry ORDER BY canonical_symbol"

# --- ingest ----------------------------------------------------------------

STAGE_COLUMNS = (
    "line_no",
    "canonical_symbol",
    "ts_utc",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "vwap",
    "trade_count",
)

# line_no: given by a client that stages rows itself, or numbered by the stage
# when a chunk of a file is COPYed straight in (ingest_staged_bars adds the offset).
CREATE_BARS_STAGE = """
CREATE TEMP TABLE tickagg_bars_stage (
    line_no bigint GENERATED BY DEFAULT AS IDENTITY, canonical_symbol text, ts_utc text,
    open text, high text, low text, close text, volume text, source text, vwap text,
    trade_count text) ON COMMIT DROP
"""

COPY_BARS_STAGE = "COPY tickagg_bars_stage (" + ", ".join(STAGE_COLUMNS) + ") FROM STDIN"

# Keys of a file's earlier chunks (see ingest_staged_bars): kept across the
# chunks' commits, dropped when the file is done.
CREATE_BARS_SEEN = """
CREATE TEMP TABLE tickagg_bars_seen (
    canonical_symbol text, first_ts timestamptz, last_ts timestamptz,
    ts_list timestamptz[], line_list bigint[])
"""

# uncompressed: compressing the arrays cost 5x what writing them does
STORE_BARS_SEEN_PLAIN = """
ALTER TABLE pg_temp.tickagg_bars_seen
    ALTER COLUMN ts_list SET STORAGE EXTERNAL, ALTER COLUMN line_list SET STORAGE EXTERNAL
"""

DROP_BARS_SEEN = "DROP TABLE IF EXISTS pg_temp.tickagg_bars_seen"

INGEST_STAGED_BARS = """
SELECT tickagg.ingest_staged_bars(
    p_file_name => %(file_name)s,
    p_default_source => coalesce(%(default_source)s, 'polygon_historical'),
    p_batch_id => %(batch_id)s,
    p_line_offset => %(line_offset)s,
    p_part => %(part)s,
    p_parts => %(parts)s) AS result
"""

INGEST_BATCH_START = "SELECT tickagg.ingest_batch_start(p_file_name => %(file_name)s) AS batch_id"


# --- views -----------------------------------------------------------------

TASK_STATUS = "SELECT * FROM tickagg.task_status"  # the view orders by timeframe rank

TASK_STATUS_OF_SYMBOL = "SELECT * FROM tickagg.task_status WHERE canonical_symbol = %(symbol)s"

TASK_SUMMARY = "SELECT * FROM tickagg.task_summary"

# What `run --until-idle` leaves behind, per kind: tasks another runner still
# leases (a crashed one's until its lease ends), tasks backing off after a
# failure, tasks given up on (hard_failed, or optional and auto-disabled after
# hard failures), and tasks due now
WORK_LEFT = """
SELECT
    t.task_kind,
    coalesce(max(w.due), 0) AS due,
    count(*) FILTER (WHERE t.status = 'running') AS leased,
    count(*) FILTER (
        WHERE t.status = 'idle' AND t.next_run_at > now()
        AND (t.transient_fail_streak > 0 OR t.hard_fail_streak > 0)
    ) AS backing_off,
    count(*) FILTER (WHERE t.status IN ('hard_failed', 'disabled')) AS given_up
FROM tickagg.task_status AS t
LEFT JOIN tickagg.task_waits AS w ON w.task_kind = t.task_kind
WHERE t.enabled
GROUP BY t.task_kind
HAVING
    coalesce(max(w.due), 0) > 0
    OR count(*) FILTER (
        WHERE t.status IN ('running', 'hard_failed', 'disabled')
        OR (
            t.status = 'idle' AND t.next_run_at > now()
            AND (t.transient_fail_streak > 0 OR t.hard_fail_streak > 0)
        )
    ) > 0
ORDER BY t.task_kind
"""

# hard_failed, failing or erroring tasks, worst first, capped: status lists them by name
TASKS_NEEDING_ATTENTION = """
SELECT * FROM tickagg.task_status
WHERE status = 'hard_failed' OR hard_fail_streak > 0 OR transient_fail_streak > 0
ORDER BY status = 'hard_failed' DESC, hard_fail_streak DESC, transient_fail_streak DESC,
    canonical_symbol, timeframe, task_kind
LIMIT %(limit)s
"""

BAR_COUNTS = "SELECT * FROM tickagg.bar_counts"

# real-time views, one per timeframe (materialised bars + live tail)
OHLCV_VIEWS = {
    "5m": "ohlcv_5min",
    "15m": "ohlcv_15min",
    "30m": "ohlcv_30min",
    "1h": "ohlcv_1hour",
    "4h": "ohlcv_4hour",
    "1d": "ohlcv_1day",
    "1w": "ohlcv_1week",
}

SAMPLE_BARS = sql.SQL("""
SELECT * FROM tickagg.{view}
WHERE canonical_symbol = %(symbol)s
ORDER BY bucket DESC LIMIT %(limit)s
""")

QUALITY_DISTRIBUTION = sql.SQL("""
SELECT %(timeframe)s AS timeframe,
       count(*) FILTER (WHERE quality_score = 2) AS q2,
       count(*) FILTER (WHERE quality_score = 1) AS q1,
       count(*) FILTER (WHERE quality_score = 0) AS q0
FROM tickagg.{view}
""")


# --- helpers ---------------------------------------------------------------


def _one(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> Any:
    with wrap_exceptions():
        row = conn.execute(query, params).fetchone()
    if row is None:
        return None
    return next(iter(row.values()))


def _all(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None) -> list[dict]:
    with wrap_exceptions():
        return conn.execute(query, params or {}).fetchall()


def get_due_tasks(
    conn, env: str, limit: int = 100, lease_seconds: int | None = None, now=None
) -> list[dict]:
    """lease_seconds=None inspects without claiming."""
    return _all(
        conn,
        GET_DUE_TASKS,
        {"env": env, "now": now, "limit": limit, "lease_seconds": lease_seconds},
    )


def claim_batch(conn, env: str, lease_seconds: int, batch_size: int | None = None) -> list[dict]:
    """Claim the head of the queue and, for a live rollup or indicators head, a batch of
    its kind and timeframe."""
    return _all(
        conn,
        CLAIM_BATCH,
        {"env": env, "lease_seconds": lease_seconds, "batch_size": batch_size},
    )


def next_due_at(conn, env: str):
    return _one(conn, NEXT_DUE_AT, {"env": env})


def catchup_aggregation_range(
    conn, symbol: str, timeframe: str, cursor, max_windows: int | None = None
) -> dict:
    return _one(
        conn,
        CATCHUP_AGGREGATION_RANGE,
        {"symbol": symbol, "timeframe": timeframe, "cursor": cursor, "max_windows": max_windows},
    )


def _rollup_run_params(task: dict, run_id, started_at, max_windows: int | None) -> dict:
    return {
        "symbol": task["canonical_symbol"],
        "timeframe": task["timeframe"],
        "claim_token": task["claim_token"],
        "cursor": task["cursor_ts"],
        "run_id": run_id,
        "started_at": started_at,
        "max_windows": max_windows,
    }


def agg_run_rollup(conn, task: dict, run_id, started_at, max_windows: int | None = None) -> dict:
    """A claimed rollup run, finished and logged in one statement: in autocommit it
    commits on its own."""
    return _one(conn, AGG_RUN_ROLLUP, _rollup_run_params(task, run_id, started_at, max_windows))


def agg_run_rollup_and_claim(
    conn,
    task: dict,
    run_id,
    started_at,
    max_windows: int | None,
    env: str,
    lease_seconds: int,
    batch_size: int | None = None,
) -> tuple[dict, list[dict]]:
    """The run's result (as agg_run_rollup) and the tasks claimed after it (a task, a
    batch, or none when nothing is due): in autocommit both commit together."""
    params = _rollup_run_params(task, run_id, started_at, max_windows)
    with wrap_exceptions():
        rows = conn.execute(
            AGG_RUN_ROLLUP_AND_CLAIM,
            {**params, "env": env, "lease_seconds": lease_seconds, "batch_size": batch_size},
        ).fetchall()
    result = rows[0].pop("result")
    for row in rows[1:]:
        row.pop("result")
    return result, [row for row in rows if row["claim_token"] is not None]


def agg_run_batch(
    conn, tasks: list[dict], run_ids: list, started_at, max_windows: int | None = None
) -> list[dict]:
    """A claimed batch of rollup, indicators or ticks_1m tasks of one timeframe run in
    one statement (agg_run_rollup_batch / agg_run_indicators_batch /
    agg_run_ticks_batch; max_windows caps an indicators task's bars, a ticks_1m
    task's minutes): a row per task (canonical_symbol, outcome 'success' or
    'lease_lost', result)."""
    query = {
        "rollup": AGG_RUN_ROLLUP_BATCH,
        "indicators": AGG_RUN_INDICATORS_BATCH,
        "ticks_1m": AGG_RUN_TICKS_BATCH,
    }[tasks[0]["task_kind"]]
    return _all(
        conn,
        query,
        {
            "timeframe": tasks[0]["timeframe"],
            "symbols": [t["canonical_symbol"] for t in tasks],
            "claim_tokens": [t["claim_token"] for t in tasks],
            "cursors": [t["cursor_ts"] for t in tasks],
            "run_ids": run_ids,
            "started_at": started_at,
            "max_windows": max_windows,
        },
    )


def indicators_step(conn, symbol: str, timeframe: str, cursor, max_bars: int | None = None) -> dict:
    return _one(
        conn,
        INDICATORS_STEP,
        {"symbol": symbol, "timeframe": timeframe, "cursor": cursor, "max_bars": max_bars},
    )


def agg_finish(
    conn,
    task: dict,
    outcome: str,
    *,
    cursor_from=None,
    cursor_to=None,
    error: str | None = None,
    bars_written: int = 0,
    cont: bool = False,
) -> dict:
    return _one(
        conn,
        AGG_FINISH,
        {
            "symbol": task["canonical_symbol"],
            "timeframe": task["timeframe"],
            "task_kind": task["task_kind"],
            "claim_token": task["claim_token"],
            "outcome": outcome,
            "cursor_from": cursor_from,
            "cursor_to": cursor_to,
            "error": error,
            "bars_written": bars_written,
            "continue": cont,
        },
    )


def set_statement_timeout(conn, seconds: float) -> None:
    _one(conn, SET_STATEMENT_TIMEOUT, {"timeout": f"{int(seconds * 1000)}ms"})


def sync_agg_state_from_registry(conn, env: str, start=None) -> dict:
    return _one(conn, SYNC_AGG_STATE_FROM_REGISTRY, {"env": env, "start": start})


def register_symbol(
    conn,
    symbol: str,
    calendar: str,
    *,
    asset_class=None,
    source_kind: str = "bars",
    is_mandatory: bool = False,
    price_kind: str = "last",
    active: bool = True,
    test_active: bool = False,
) -> dict:
    return _one(
        conn,
        REGISTER_SYMBOL,
        {
            "symbol": symbol,
            "calendar": calendar,
            "asset_class": asset_class,
            "source_kind": source_kind,
            "is_mandatory": is_mandatory,
            "price_kind": price_kind,
            "active": active,
            "test_active": test_active,
        },
    )


def list_symbols(conn) -> list[dict]:
    return _all(conn, LIST_SYMBOLS)


def create_bars_stage(conn, ignored_columns: int = 0) -> None:
    """The stage; `ignored_columns` more text columns take a file's columns that bars do not use."""
    with wrap_exceptions():
        conn.execute(CREATE_BARS_STAGE)
        for i in range(ignored_columns):
            conn.execute(
                sql.SQL("ALTER TABLE pg_temp.tickagg_bars_stage ADD COLUMN {} text").format(
                    sql.Identifier(f"ignored_{i}")
                )
            )


def copy_bars_chunk_sql(columns: list[str]) -> sql.Composed:
    """COPY of CSV lines whose fields are `columns` (stage column names) into the stage;
    a quoted empty field is NULL like an unquoted one (as the file reader always read it)."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("COPY tickagg_bars_stage ({}) FROM STDIN (FORMAT csv, FORCE_NULL ({}))").format(
        cols, cols
    )


def create_bars_seen(conn) -> None:
    with wrap_exceptions():
        conn.execute(CREATE_BARS_SEEN)
        conn.execute(STORE_BARS_SEEN_PLAIN)


def drop_bars_seen(conn) -> None:
    with wrap_exceptions():
        conn.execute(DROP_BARS_SEEN)


def ingest_staged_bars(
    conn,
    file_name: str,
    default_source: str | None,
    batch_id: int | None = None,
    line_offset: int = 0,
    part: int = 0,
    parts: int = 1,
) -> dict:
    return _one(
        conn,
        INGEST_STAGED_BARS,
        {
            "file_name": file_name,
            "default_source": default_source,
            "batch_id": batch_id,
            "line_offset": line_offset,
            "part": part,
            "parts": parts,
        },
    )


def ingest_batch_start(conn, file_name: str) -> int:
    return _one(conn, INGEST_BATCH_START, {"file_name": file_name})


def task_status(conn) -> list[dict]:
    return _all(conn, TASK_STATUS)


def task_status_of_symbol(conn, symbol: str) -> list[dict]:
    return _all(conn, TASK_STATUS_OF_SYMBOL, {"symbol": symbol})


def work_left(conn) -> list[dict]:
    """Per kind, the tasks due, leased, backing off or given up on (kinds with any)."""
    return _all(conn, WORK_LEFT)


def task_summary(conn) -> list[dict]:
    """Tasks per kind and timeframe: counts, failures, oldest cursor, largest lag."""
    return _all(conn, TASK_SUMMARY)


def tasks_needing_attention(conn, limit: int) -> list[dict]:
    return _all(conn, TASKS_NEEDING_ATTENTION, {"limit": limit})


def bar_counts(conn) -> list[dict]:
    return _all(conn, BAR_COUNTS)


def sample_bars(conn, symbol: str, timeframe: str, limit: int = 10) -> list[dict]:
    q = SAMPLE_BARS.format(view=sql.Identifier(OHLCV_VIEWS[timeframe]))
    return _all(conn, q, {"symbol": symbol, "limit": limit})


LATEST_INDICATORS = """
SELECT ts_utc, indicators
FROM tickagg.bar_indicators
WHERE canonical_symbol = %(symbol)s AND timeframe = %(timeframe)s
ORDER BY ts_utc DESC
LIMIT 1
"""


def latest_indicators(conn, symbol: str, timeframe: str) -> list[dict]:
    """The indicators of the newest bar they were computed for ([] if none yet)."""
    return _all(conn, LATEST_INDICATORS, {"symbol": symbol, "timeframe": timeframe})


def quality_distribution(conn) -> list[dict]:
    out = []
    for tf, view in OHLCV_VIEWS.items():
        q = QUALITY_DISTRIBUTION.format(view=sql.Identifier(view))
        out.extend(_all(conn, q, {"timeframe": tf}))
    return out


# --- rebuild ---------------------------------------------------------------

DERIVED_REBUILD_RANGE = """
SELECT tickagg.derived_rebuild_range(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_from => %(from)s,
    p_to => %(to)s) AS result
"""

# the symbol's rollup tasks in hierarchy order (task_status orders by timeframe rank),
# with the span each has materialised: first bucket boundary up to the cursor
REBUILD_TASK_BOUNDS = """
SELECT
    s.timeframe,
    tickagg.agg_bootstrap_cursor(
        p_canonical_symbol => s.canonical_symbol, p_timeframe => s.timeframe) AS first_bucket,
    s.cursor_ts
FROM tickagg.task_status AS s
WHERE s.canonical_symbol = %(symbol)s AND s.task_kind = 'rollup'
"""


def derived_rebuild_range(conn, symbol: str, timeframe: str, from_ts, to_ts) -> dict:
    return _one(
        conn,
        DERIVED_REBUILD_RANGE,
        {"symbol": symbol, "timeframe": timeframe, "from": from_ts, "to": to_ts},
    )


def rebuild_task_bounds(conn, symbol: str) -> list[dict]:
    return _all(conn, REBUILD_TASK_BOUNDS, {"symbol": symbol})


# --- gaps and calendars ----------------------------------------------------

GAP_SCAN_RUN = """
SELECT tickagg.gap_scan_run(
    p_canonical_symbol => %(symbol)s,
    p_scope => %(scope)s) AS result
"""

AGG_FIND_GAPS = """
SELECT gap_start, gap_end, missing_candles FROM tickagg.agg_find_gaps(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_from => %(from)s,
    p_to => %(to)s)
"""

BARS_READ = """
SELECT * FROM tickagg.bars_read(
    p_symbols => %(symbols)s,
    p_timeframe => %(timeframe)s,
    p_from => %(from)s,
    p_to => %(to)s,
    p_indicators => %(indicators)s,
    p_include_open => %(include_open)s,
    p_fill => %(fill)s)
"""

SYMBOL_TIME_ZONE = """
SELECT c.time_zone
FROM tickagg.asset_registry AS r
INNER JOIN tickagg.market_calendars AS c ON c.calendar_code = r.calendar_code
WHERE r.canonical_symbol = %(symbol)s
"""

TIMEFRAME_ADD = """
SELECT * FROM tickagg.timeframe_add(
    p_timeframe => %(timeframe)s,
    p_step => %(step)s,
    p_source_timeframe => %(source)s,
    p_for_symbols => %(for_symbols)s)
"""

LIST_TIMEFRAMES = """
SELECT timeframe, bucket_kind, step, source_timeframe, sort_order
FROM tickagg.timeframes ORDER BY sort_order
"""

LIST_CALENDARS = "SELECT * FROM tickagg.calendars"

LIST_CALENDAR_HOLIDAYS = """
SELECT * FROM tickagg.calendar_holidays
WHERE (%(calendar)s::text IS NULL OR calendar_code = %(calendar)s)
  AND (%(year)s::integer IS NULL OR extract(YEAR FROM holiday_date) = %(year)s)
"""

CALENDAR_SET_HOLIDAY = """
SELECT tickagg.calendar_set_holiday(
    p_calendar_code => %(calendar)s,
    p_holiday_date => %(holiday_date)s,
    p_early_close => %(early_close)s,
    p_description => %(description)s) AS result
"""

COVERAGE = "SELECT * FROM tickagg.coverage ORDER BY canonical_symbol"


def gap_scan_run(conn, symbol: str, scope: str) -> dict:
    return _one(conn, GAP_SCAN_RUN, {"symbol": symbol, "scope": scope})


def agg_find_gaps(conn, symbol: str, timeframe: str, from_ts, to_ts) -> list[dict]:
    return _all(
        conn,
        AGG_FIND_GAPS,
        {"symbol": symbol, "timeframe": timeframe, "from": from_ts, "to": to_ts},
    )


def symbol_time_zone(conn, symbol: str) -> str | None:
    return _one(conn, SYMBOL_TIME_ZONE, {"symbol": symbol})


def timeframe_add(conn, timeframe: str, step, source: str, for_symbols: bool) -> dict:
    return _all(
        conn,
        TIMEFRAME_ADD,
        {"timeframe": timeframe, "step": step, "source": source, "for_symbols": for_symbols},
    )[0]


def list_timeframes(conn) -> list[dict]:
    return _all(conn, LIST_TIMEFRAMES)


def list_calendars(conn) -> list[dict]:
    return _all(conn, LIST_CALENDARS)


def list_calendar_holidays(conn, calendar: str | None, year: int | None) -> list[dict]:
    return _all(conn, LIST_CALENDAR_HOLIDAYS, {"calendar": calendar, "year": year})


def calendar_set_holiday(conn, calendar: str, holiday_date, early_close, description: str) -> dict:
    return _one(
        conn,
        CALENDAR_SET_HOLIDAY,
        {
            "calendar": calendar,
            "holiday_date": holiday_date,
            "early_close": early_close,
            "description": description,
        },
    )


def coverage(conn) -> list[dict]:
    return _all(conn, COVERAGE)


# --- operations: run log and metrics ------------------------------------------

OPS_LOG_RUN = """
SELECT tickagg.ops_log_run(
    p_run_id => %(run_id)s,
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_task_kind => %(task_kind)s,
    p_started_at => %(started_at)s,
    p_outcome => %(outcome)s,
    p_bars_written => %(bars_written)s,
    p_cursor_from => %(cursor_from)s,
    p_cursor_to => %(cursor_to)s,
    p_error => %(error)s) AS result
"""

# lag of rollup tasks that should be moving (enabled, not failed), per timeframe
METRICS_LAG = """
SELECT
    h.timeframe,
    max(extract(EPOCH FROM h.refresh_lag))::float8 AS lag_max,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(EPOCH FROM h.refresh_lag))::float8
        AS lag_p95
FROM tickagg.aggregation_health AS h
JOIN tickagg.task_status AS s USING (canonical_symbol, timeframe, task_kind)
WHERE h.task_kind IN ('rollup', 'ticks_1m') AND s.enabled  -- ticks_1m: the '1m' series
GROUP BY h.timeframe
"""

METRICS_TASKS = """
SELECT
    task_kind,
    status,
    enabled,
    count(*) AS tasks,
    max(greatest(hard_fail_streak, transient_fail_streak)) AS fail_streak_max
FROM tickagg.task_status
GROUP BY task_kind, status, enabled
"""

METRICS_GAPS = """
SELECT
    count(*) AS open_gaps,
    coalesce(extract(EPOCH FROM max(age)), 0)::float8 AS oldest_gap_age_seconds
FROM tickagg.gaps_open
"""

METRICS_COVERAGE = """
SELECT canonical_symbol, coverage_24h::float8 AS coverage_24h, coverage_7d::float8 AS coverage_7d
FROM tickagg.coverage
"""

# the exporter's view, when it exists: None otherwise
EXPORT_BACKLOG_VIEW = "SELECT to_regclass('tickagg.export_backlog') IS NOT NULL AS present"


def ops_log_run(
    conn,
    run_id,
    task: dict,
    started_at,
    outcome: str,
    *,
    bars_written: int = 0,
    cursor_from=None,
    cursor_to=None,
    error: str | None = None,
) -> dict:
    return _one(
        conn,
        OPS_LOG_RUN,
        {
            "run_id": run_id,
            "symbol": task["canonical_symbol"],
            "timeframe": task["timeframe"],
            "task_kind": task["task_kind"],
            "started_at": started_at,
            "outcome": outcome,
            "bars_written": bars_written,
            "cursor_from": cursor_from,
            "cursor_to": cursor_to,
            "error": error,
        },
    )


def metrics_lag(conn) -> list[dict]:
    return _all(conn, METRICS_LAG)


def metrics_tasks(conn) -> list[dict]:
    return _all(conn, METRICS_TASKS)


def metrics_gaps(conn) -> dict:
    rows = _all(conn, METRICS_GAPS)
    return rows[0] if rows else {"open_gaps": 0, "oldest_gap_age_seconds": 0.0}


def metrics_coverage(conn) -> list[dict]:
    return _all(conn, METRICS_COVERAGE)


def export_backlog_view_exists(conn) -> bool:
    return bool(_one(conn, EXPORT_BACKLOG_VIEW, {}))


HEALTH_SUMMARY = """
SELECT status, count(*) AS tasks
FROM tickagg.aggregation_health
GROUP BY status
ORDER BY array_position(ARRAY['HEALTHY', 'WARNING', 'DELAYED'], status)
"""


def health_summary(conn) -> dict[str, int]:
    """Tasks per aggregation_health status (HEALTHY / WARNING / DELAYED)."""
    return {r["status"]: r["tasks"] for r in _all(conn, HEALTH_SUMMARY)}


TASK_WAITS = "SELECT * FROM tickagg.task_waits"


def task_waits(conn) -> list[dict]:
    """Due tasks per kind and how long the oldest of them has waited (no starvation)."""
    return _all(conn, TASK_WAITS)


# --- ClickHouse export (issue 6) ---------------------------------------------------

SYNC_EXPORT_TASKS = """
SELECT tickagg.sync_export_tasks(p_env => %(env)s, p_start => %(start)s) AS result
"""

EXPORT_HORIZON_ADVANCE = "SELECT tickagg.export_horizon_advance() AS horizon"

EXPORT_CHANGE_NO_ISSUED = "SELECT tickagg.export_change_no_issued() AS issued"

EXPORT_CURSOR = "SELECT tickagg.export_cursor(p_canonical_symbol => %(symbol)s) AS cursor"

EXPORT_BATCH = """
SELECT * FROM tickagg.export_batch(
    p_canonical_symbol => %(symbol)s,
    p_after_change_no => %(after)s,
    p_limit => %(limit)s,
    p_upto => %(upto)s)
"""

EXPORT_ADVANCE = """
SELECT tickagg.export_advance(
    p_canonical_symbol => %(symbol)s,
    p_claim_token => %(claim_token)s,
    p_from_change_no => %(from_change_no)s,
    p_to_change_no => %(to_change_no)s) AS cursor
"""

EXPORT_DAY_CHECKSUMS = """
SELECT * FROM tickagg.export_day_checksums(
    p_canonical_symbol => %(symbol)s, p_from => %(from_ts)s, p_to => %(to_ts)s)
"""

EXPORT_SYMBOLS = """
SELECT canonical_symbol FROM tickagg.export_backlog
WHERE enabled AND (%(symbol)s::text IS NULL OR canonical_symbol = %(symbol)s)
ORDER BY canonical_symbol
"""


def sync_export_tasks(conn, env: str, start=None) -> dict:
    return _one(conn, SYNC_EXPORT_TASKS, {"env": env, "start": start})


def export_horizon_advance(conn) -> int:
    return int(_one(conn, EXPORT_HORIZON_ADVANCE, {}))


def export_change_no_issued(conn) -> int:
    return int(_one(conn, EXPORT_CHANGE_NO_ISSUED, {}))


def export_cursor(conn, symbol: str) -> int | None:
    return _one(conn, EXPORT_CURSOR, {"symbol": symbol})


def export_batch(conn, symbol: str, after: int, limit: int, upto: int | None) -> list[dict]:
    return _all(
        conn, EXPORT_BATCH, {"symbol": symbol, "after": after, "limit": limit, "upto": upto}
    )


def export_advance(conn, symbol: str, claim_token, from_change_no: int, to_change_no: int) -> int:
    return _one(
        conn,
        EXPORT_ADVANCE,
        {
            "symbol": symbol,
            "claim_token": claim_token,
            "from_change_no": from_change_no,
            "to_change_no": to_change_no,
        },
    )


def export_day_checksums(conn, symbol: str, from_ts, to_ts) -> list[dict]:
    return _all(conn, EXPORT_DAY_CHECKSUMS, {"symbol": symbol, "from_ts": from_ts, "to_ts": to_ts})


def export_symbols(conn, symbol: str | None = None) -> list[str]:
    return [r["canonical_symbol"] for r in _all(conn, EXPORT_SYMBOLS, {"symbol": symbol})]


EXPORT_CLAIM = """
SELECT tickagg.export_claim(
    p_canonical_symbol => %(symbol)s, p_lease_seconds => %(lease_seconds)s) AS claim_token
"""

EXPORT_TASK_CURSOR_TS = """
SELECT cursor_ts FROM tickagg.task_status
WHERE canonical_symbol = %(symbol)s AND timeframe = '1m' AND task_kind = 'export'
"""


def export_claim(conn, symbol: str, lease_seconds: int = 300):
    return _one(conn, EXPORT_CLAIM, {"symbol": symbol, "lease_seconds": lease_seconds})


def export_task_cursor_ts(conn, symbol: str):
    return _one(conn, EXPORT_TASK_CURSOR_TS, {"symbol": symbol})


# --- task control and doctor (issue 8) ---------------------------------------------

AGG_TASK_SET_ENABLED = """
SELECT tickagg.agg_task_set_enabled(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_task_kind => %(task_kind)s,
    p_enabled => %(enabled)s) AS result
"""

AGG_TASK_RESET = """
SELECT tickagg.agg_task_reset(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_task_kind => %(task_kind)s,
    p_force => %(force)s) AS result
"""


def agg_task_set_enabled(
    conn, symbol: str, timeframe: str | None, task_kind: str | None, enabled: bool
) -> dict:
    return _one(
        conn,
        AGG_TASK_SET_ENABLED,
        {"symbol": symbol, "timeframe": timeframe, "task_kind": task_kind, "enabled": enabled},
    )


def agg_task_reset(
    conn, symbol: str, timeframe: str | None, task_kind: str | None, force: bool
) -> dict:
    return _one(
        conn,
        AGG_TASK_RESET,
        {"symbol": symbol, "timeframe": timeframe, "task_kind": task_kind, "force": force},
    )


INGEST_REJECT_LINES = """
SELECT tickagg.ingest_reject_lines(
    p_batch_id => %(batch_id)s,
    p_line_nos => %(line_nos)s,
    p_reasons => %(reasons)s,
    p_raw_lines => %(raw_lines)s
) AS r
"""


def ingest_reject_lines(
    conn, batch_id: int, line_nos: list[int], reasons: list[str], raw_lines: list[str]
) -> dict:
    return _one(
        conn,
        INGEST_REJECT_LINES,
        {"batch_id": batch_id, "line_nos": line_nos, "reasons": reasons, "raw_lines": raw_lines},
    )


AGG_TASK_SET_CURSOR = """
SELECT tickagg.agg_task_set_cursor(
    p_canonical_symbol => %(symbol)s,
    p_timeframe => %(timeframe)s,
    p_task_kind => %(task_kind)s,
    p_cursor => %(cursor)s,
    p_force => %(force)s) AS result
"""


def agg_task_set_cursor(
    conn, symbol: str, timeframe: str | None, task_kind: str | None, cursor, force: bool
) -> dict:
    return _one(
        conn,
        AGG_TASK_SET_CURSOR,
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "task_kind": task_kind,
            "cursor": cursor,
            "force": force,
        },
    )


# SECURITY DEFINER functions of the schema whose search_path is not the pinned one
DOCTOR_UNPINNED_DEFINERS = """
SELECT p.oid::regprocedure::text AS function
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = to_regnamespace(%(schema)s)
  AND p.prosecdef
  AND NOT (%(pinned)s = ANY(coalesce(p.proconfig, ARRAY[]::text[])))
ORDER BY 1
"""

# functions PUBLIC may execute (explicitly or by the default ACL)
DOCTOR_PUBLIC_EXECUTE = """
SELECT p.oid::regprocedure::text AS function
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = to_regnamespace(%(schema)s)
  AND EXISTS (
      SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
ORDER BY 1
"""

DOCTOR_ROLE_EXISTS = "SELECT to_regrole(%(role)s) IS NOT NULL AS present"

# functions the runner role cannot execute
DOCTOR_RUNNER_MISSING_EXECUTE = """
SELECT p.oid::regprocedure::text AS function
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = to_regnamespace(%(schema)s)
  AND NOT has_function_privilege(%(role)s, p.oid, 'EXECUTE')
  AND p.proname <> ALL(%(denied)s)
ORDER BY 1
"""

# running tasks whose lease ran out more than p_grace ago: no runner is reclaiming them
DOCTOR_STUCK_LEASES = """
SELECT canonical_symbol, timeframe, task_kind, lease_expires_at
FROM tickagg.data_agg_state
WHERE status = 'running' AND lease_expires_at < now() - %(grace)s::interval
ORDER BY lease_expires_at
"""

DOCTOR_TABLE_BLOAT = """
SELECT n_live_tup, n_dead_tup, last_autovacuum, last_vacuum
FROM pg_catalog.pg_stat_user_tables
WHERE schemaname = %(schema)s AND relname = %(table)s
"""


def doctor_unpinned_definers(conn, schema: str, pinned: str) -> list[str]:
    rows = _all(conn, DOCTOR_UNPINNED_DEFINERS, {"schema": schema, "pinned": pinned})
    return [r["function"] for r in rows]


def doctor_public_execute(conn, schema: str) -> list[str]:
    return [r["function"] for r in _all(conn, DOCTOR_PUBLIC_EXECUTE, {"schema": schema})]


def doctor_role_exists(conn, role: str) -> bool:
    return bool(_one(conn, DOCTOR_ROLE_EXISTS, {"role": role}))


def doctor_runner_missing_execute(
    conn, schema: str, role: str, denied: tuple[str, ...]
) -> list[str]:
    """The functions `role` cannot execute, but those in `denied`."""
    rows = _all(
        conn,
        DOCTOR_RUNNER_MISSING_EXECUTE,
        {"schema": schema, "role": role, "denied": list(denied)},
    )
    return [r["function"] for r in rows]


def doctor_stuck_leases(conn, grace: str) -> list[dict]:
    return _all(conn, DOCTOR_STUCK_LEASES, {"grace": grace})


def doctor_table_bloat(conn, schema: str, table: str) -> dict | None:
    rows = _all(conn, DOCTOR_TABLE_BLOAT, {"schema": schema, "table": table})
    return rows[0] if rows else None


# --- ticks -------------------------------------------------------------------

TICKS_AGGREGATE_MINUTES = """
SELECT tickagg.ticks_aggregate_minutes(
    p_canonical_symbol => %(symbol)s,
    p_cursor => %(cursor)s,
    p_max_windows => %(max_windows)s) AS result
"""

TICKS_RETENTION_RUN = "SELECT tickagg.ticks_retention_run() AS result"

# Typed stage: a well-formed file COPYs straight into it (line_no = offset + row_no).
CREATE_TICKS_STAGE = """
CREATE TEMP TABLE tickagg_ticks_stage (
    row_no bigint GENERATED BY DEFAULT AS IDENTITY, canonical_symbol text, ts_utc timestamptz,
    bid double precision, ask double precision, last_price double precision,
    size double precision, trade_id text) ON COMMIT DROP
"""

# Text stage: for a chunk whose fields did not COPY into typed columns.
CREATE_TICKS_TEXT_STAGE = """
CREATE TEMP TABLE tickagg_ticks_text_stage (
    line_no bigint, canonical_symbol text, ts_utc text, bid text, ask text,
    last_price text, size text, trade_id text, problem text) ON COMMIT DROP
"""

TICKS_TEXT_STAGE_COLUMNS = (
    "line_no",
    "canonical_symbol",
    "ts_utc",
    "bid",
    "ask",
    "last_price",
    "size",
    "trade_id",
    "problem",
)

COPY_TICKS_TEXT_STAGE = (
    "COPY tickagg_ticks_text_stage (" + ", ".join(TICKS_TEXT_STAGE_COLUMNS) + ") FROM STDIN"
)

# the session's time zone reads offset-less timestamps of a file as UTC
SET_LOCAL_TIMEZONE_UTC = "SELECT set_config('timezone', 'UTC', true) AS timezone"

INGEST_STAGED_TICKS = """
SELECT tickagg.ingest_staged_ticks(
    p_file_name => %(file_name)s,
    p_batch_id => %(batch_id)s,
    p_line_offset => %(line_offset)s,
    p_text_stage => %(text_stage)s) AS result
"""

TICKS_STORAGE = "SELECT * FROM tickagg.ticks_storage"


def copy_ticks_stage_sql(columns: list[str]) -> sql.Composed:
    """COPY of a CSV whose header names `columns` (stage column names) into the typed stage."""
    return sql.SQL("COPY tickagg_ticks_stage ({}) FROM STDIN (FORMAT csv)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


def ticks_aggregate_minutes(conn, symbol: str, cursor, max_windows: int | None = None) -> dict:
    return _one(
        conn,
        TICKS_AGGREGATE_MINUTES,
        {"symbol": symbol, "cursor": cursor, "max_windows": max_windows},
    )


def ticks_retention_run(conn) -> dict:
    return _one(conn, TICKS_RETENTION_RUN, {})


def create_ticks_stage(conn, text: bool = False) -> None:
    with wrap_exceptions():
        conn.execute(CREATE_TICKS_TEXT_STAGE if text else CREATE_TICKS_STAGE)
        conn.execute(SET_LOCAL_TIMEZONE_UTC)


def ingest_staged_ticks(
    conn, file_name: str, batch_id: int | None, line_offset: int, text_stage: bool
) -> dict:
    return _one(
        conn,
        INGEST_STAGED_TICKS,
        {
            "file_name": file_name,
            "batch_id": batch_id,
            "line_offset": line_offset,
            "text_stage": text_stage,
        },
    )


def ticks_storage(conn) -> dict | None:
    rows = _all(conn, TICKS_STORAGE)
    return rows[0] if rows else None


AGG_TASK_SET_DELAY = """
SELECT tickagg.agg_task_set_delay(
    p_canonical_symbol => %(symbol)s,
    p_delay => %(delay)s,
    p_task_kind => %(task_kind)s) AS result
"""

INGEST_TICKS = """
SELECT tickagg.ingest_ticks(
    p_canonical_symbol => %(symbols)s,
    p_ts_utc => %(ts)s,
    p_bid => %(bid)s,
    p_ask => %(ask)s,
    p_last_price => %(last)s,
    p_size => %(size)s,
    p_trade_id => %(trade_id)s) AS result
"""

# the demo runs as the owner; data_bars is not a view the runner role reads
TICK_BAR_SUMMARY = """
SELECT b.canonical_symbol, b.source, b.volume_kind, count(*) AS bars
FROM tickagg.data_bars AS b
WHERE b.canonical_symbol = ANY(%(symbols)s)
GROUP BY 1, 2, 3 ORDER BY 1, 2
"""

SETTING = "SELECT tickagg.setting(p_setting_key => %(key)s) AS value"


def tick_bar_summary(conn, symbols: list[str]) -> list[dict]:
    return _all(conn, TICK_BAR_SUMMARY, {"symbols": symbols})


def setting(conn, key: str) -> str | None:
    return _one(conn, SETTING, {"key": key})


def agg_task_set_delay(conn, symbol: str, delay, task_kind: str | None = None) -> int:
    return _one(
        conn, AGG_TASK_SET_DELAY, {"symbol": symbol, "delay": delay, "task_kind": task_kind}
    )


def ingest_ticks(conn, ticks: list[tuple]) -> dict:
    """ticks: (symbol, ts_utc, bid, ask, last, size[, trade_id]) tuples in arrival
    order. Without a trade id, identical ticks of one call are distinct trades."""
    rows = [(*t, None) if len(t) == 6 else tuple(t) for t in ticks]
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 7
    names = ("symbols", "ts", "bid", "ask", "last", "size", "trade_id")
    return _one(conn, INGEST_TICKS, dict(zip(names, cols, strict=True)))


RUN_PROGRESS = "SELECT * FROM tickagg.run_progress(%(env)s)"


def run_progress(conn, env: str) -> list[dict]:
    """Per task kind: tasks due, running, and the slowest cursor among them."""
    return _all(conn, RUN_PROGRESS, {"env": env})
