"""A new rollup task of a level above 5m is not due right after sync (its first
run had nothing to do: its source had not passed its first bucket); it waits for
the bucket at its cursor like every later run, and its source's progress makes it
due. The whole hierarchy still reaches the oracle's bars."""

from __future__ import annotations

import datetime as dt

import helpers as h
from oracle import diff
from test_oracle import assert_matches, build, load, oracle

from runner.loop import Runner, RunnerConfig

D = dt.date


def test_a_new_higher_level_task_waits_for_its_source(dsn, conn):
    agg_start, data = build(2415, ranges=((D(2025, 10, 27), D(2025, 10, 29)),))
    load(conn, agg_start, data)
    h.rollups_only(conn)
    tasks = conn.execute(
        "SELECT canonical_symbol, timeframe, next_run_at <= now() AS due, pending_bucket_end,"
        " last_agg_bar_ts_utc AS cursor, now() AS now"
        " FROM tickagg.data_agg_state WHERE task_kind = 'rollup'"
    ).fetchall()
    assert tasks
    for t in tasks:
        if t["timeframe"] == "5m":
            assert t["due"], t  # its source is the 1m bars: they may be there already
        else:
            assert not t["due"], t
            assert t["pending_bucket_end"] > t["cursor"], t
    conn.execute("TRUNCATE tickagg.ops_runlog")
    Runner(RunnerConfig(dsn=dsn)).run_due()
    assert_matches(conn, agg_start, data)
    # the first run of every task of a level above 5m had work: it moved its cursor
    wasted = conn.execute(
        "SELECT DISTINCT ON (canonical_symbol, timeframe) canonical_symbol, timeframe,"
        " cursor_from, cursor_to, bars_written"
        " FROM tickagg.ops_runlog WHERE task_kind = 'rollup' AND timeframe <> '5m'"
        " ORDER BY canonical_symbol, timeframe, finished_at"
    ).fetchall()
    assert wasted, "no run of a level above 5m"
    assert [r for r in wasted if r["cursor_to"] <= r["cursor_from"]] == []


def test_a_level_added_behind_its_caught_up_source_is_due_at_once(dsn, conn):
    agg_start, data = build(2416, ranges=((D(2025, 10, 27), D(2025, 10, 29)),))
    data = dict(list(data.items())[:2])
    for sym, (cal, _) in data.items():
        h.register(conn, sym, cal)
    conn.execute("UPDATE tickagg.core_asset_registry_all SET timeframes = ARRAY['5m']")
    h.sync(conn, agg_start)
    for sym, (_, bars) in data.items():
        h.insert_bars(conn, sym, bars)
    h.rollups_only(conn)
    Runner(RunnerConfig(dsn=dsn)).run_due()
    # the user adds levels: 15m's source (5m) is past its first bucket, the others'
    # sources are new themselves
    conn.execute("UPDATE tickagg.core_asset_registry_all SET timeframes = ARRAY['1h']")
    h.sync(conn, agg_start)
    h.rollups_only(conn)
    due = {
        r["timeframe"]: r["due"]
        for r in conn.execute(
            "SELECT DISTINCT timeframe, next_run_at <= now() AS due FROM tickagg.data_agg_state"
            " WHERE task_kind = 'rollup' AND timeframe IN ('15m', '30m', '1h')"
        )
    }
    assert due == {"15m": True, "30m": False, "1h": False}
    Runner(RunnerConfig(dsn=dsn)).run_due()
    levels = ("5m", "15m", "30m", "1h")
    exp = {k: v for k, v in oracle(agg_start, data).items() if k[1] in levels}
    problems = diff(exp, h.derived(conn, data))
    assert not problems, "\n".join(problems)


def retention_tasks(conn) -> list[dict]:
    return conn.execute(
        "SELECT canonical_symbol, enabled FROM tickagg.data_agg_state"
        " WHERE task_kind = 'ticks_retention' AND enabled ORDER BY canonical_symbol"
    ).fetchall()


def test_ticks_retention_is_one_task_whatever_the_tick_fed_symbols(dsn, conn):
    """ticks_retention_run is global work (the ticks table's partitions): one task
    does it each cycle, not one per tick-fed symbol (1,000 runs of the same work a
    cycle at 1,000 symbols). It moves to another symbol when its own leaves."""
    for sym in ("TB", "TA", "TC"):
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks')", (sym,)
        )
    h.register(conn, "BARS", "crypto_24x7")
    h.sync(conn, dt.datetime(2025, 10, 1, tzinfo=dt.UTC))
    assert retention_tasks(conn) == [{"canonical_symbol": "TA", "enabled": True}]
    conn.execute(
        "UPDATE tickagg.core_asset_registry_all SET active = false WHERE canonical_symbol = 'TA'"
    )
    h.sync(conn, dt.datetime(2025, 10, 1, tzinfo=dt.UTC))
    assert retention_tasks(conn) == [{"canonical_symbol": "TB", "enabled": True}]
    (task,) = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1000, 300)"
        " WHERE task_kind = 'ticks_retention'"
    ).fetchall()
    assert task["canonical_symbol"] == "TB"
