"""The rollup statements read bars by their primary key whatever the statistics say.

A backfill's speed must not depend on whether ANALYZE ran after the ingest or on
plans a session cached while derived_data_bars was nearly empty: a scan of the
symbol's every derived bar (its export index, or the table) per run of sessions
made a 1d catch-up of 90 bars take up to 25 s. Here one session caches its plans
on an hour of data, then catches up two months (with an empty stretch up to now)
and a late minute; every plan it ran (auto_explain, nested statements) must read
data_bars and derived_data_bars through their primary keys. No timing is asserted.
"""

from __future__ import annotations

import re

import helpers as h
import pytest

SYMBOL = "PLANS"
START = "2024-03-01 00:00:00+00"

LOAD_SQL = """
INSERT INTO tickagg.data_bars (canonical_symbol, ts_utc, open, high, low, close, volume, source,
                               source_rank)
SELECT %(symbol)s, g.ts, 100 + g.n %% 7, 102 + g.n %% 7, 98 + g.n %% 7,
       99 + g.n %% 7 + g.n %% 3, 1 + g.n %% 3, 'polygon_historical', 0
FROM (
    SELECT ts, row_number() OVER (ORDER BY ts) AS n
    FROM generate_series(%(from)s::timestamptz, %(to)s::timestamptz - interval '1 minute',
                         interval '1 minute') AS ts
) AS g
-- a few holes
WHERE g.n %% 997 <> 0
"""


def _load(conn, start: str, end: str) -> None:
    conn.execute(LOAD_SQL, {"symbol": SYMBOL, "from": start, "to": end})


def _plans_of(conn, fn) -> list[str]:
    """auto_explain output (nested statements) of everything fn runs on conn."""
    plans: list[str] = []

    def on_notice(diag) -> None:
        if diag.message_primary and diag.message_primary.startswith("duration:"):
            plans.append(diag.message_primary)

    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET client_min_messages = log")
    conn.add_notice_handler(on_notice)
    try:
        fn()
    finally:
        conn.remove_notice_handler(on_notice)
        conn.execute("SET client_min_messages = notice")
        conn.execute("SET auto_explain.log_min_duration = -1")
    return plans


def _wrong_reads(conn, plans: list[str]) -> list[str]:
    """Plans that read a bar table other than by its primary key: a sequential scan,
    or any of its other indexes (the export index finds a symbol's every bar)."""
    others = [
        r["indexname"]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'tickagg' "
            "AND tablename IN ('data_bars', 'derived_data_bars') "
            "AND indexname NOT IN ('data_bars_pkey', 'derived_data_bars_pkey')"
        )
    ]
    assert "idx_derived_data_bars_change" in others
    wrong = re.compile(
        r"Seq Scan on (data_bars|derived_data_bars)\b|\b(" + "|".join(others) + r")\b"
    )
    return [p for p in plans if wrong.search(p.split("\n", 1)[1].split("->", 1)[-1])]


@pytest.mark.parametrize("analyze_after_load", [False, True])
def test_rollup_reads_by_primary_key_whatever_the_statistics(conn, analyze_after_load):
    h.register(conn, SYMBOL, "crypto_24x7")
    h.sync(conn, START)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = (task_kind = 'rollup') "
        "WHERE canonical_symbol = %s",
        (SYMBOL,),
    )
    # An hour of data, statistics of a nearly empty database, and this session's
    # plans cached on it (a few buckets per level: the generic-plan path).
    _load(conn, "2024-03-04 00:00+00", "2024-03-04 01:00+00")
    conn.execute("ANALYZE tickagg.data_bars")
    conn.execute("ANALYZE tickagg.derived_data_bars")
    h.drive_on(conn)
    assert conn.execute("SELECT count(*) AS n FROM tickagg.derived_data_bars").fetchone()["n"] > 0

    # Two months more, then the catch-up and a late minute in the same session.
    _load(conn, "2024-03-04 01:00+00", "2024-05-04 00:00+00")
    if analyze_after_load:
        conn.execute("ANALYZE tickagg.data_bars")
    catch_up = _plans_of(conn, lambda: h.drive_on(conn))
    conn.execute(
        "UPDATE tickagg.data_bars SET close = close + 1, high = high + 1 "
        "WHERE canonical_symbol = %s AND ts_utc = '2024-04-10 12:34+00'",
        (SYMBOL,),
    )
    late = _plans_of(conn, lambda: h.drive_on(conn))
    days = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_data_bars "
        "WHERE canonical_symbol = %s AND timeframe = '1d'",
        (SYMBOL,),
    ).fetchone()["n"]
    assert days == 61

    for what, plans in (("catch-up", catch_up), ("late minute", late)):
        assert any("derived_data_bars_pkey" in p for p in plans), f"{what}: no plans captured"
        wrong = _wrong_reads(conn, plans)
        assert not wrong, f"{what}: {len(wrong)} plans read bars by another path:\n" + "\n".join(
            wrong[:3]
        )
