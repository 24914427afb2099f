"""agg_get_due_tasks' claim walks the priority index from the highest priority
that has a task due (found through idx_agg_state_priority_due and the pending
invalidations), not from its head: whatever is due (everything, a few tasks, a
few woken by invalidations, only low-priority tasks behind thousands that are
not), it claims exactly what the listing (which takes no locks and walks from the
head) shows, in its order."""

from __future__ import annotations

import datetime as dt

import helpers as h

UTC = dt.UTC
SYMBOLS = 1500  # x 7 rollup levels


def order_keys(rows: list[dict]) -> list[tuple]:
    """What the claim orders by (tasks equal in all of it may come in any order)."""
    return [(r["is_mandatory"], r["task_priority"], r["cursor_ts"], r["timeframe"]) for r in rows]


def listing(conn, limit: int) -> list[dict]:
    return conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', clock_timestamp(), %s)", (limit,)
    ).fetchall()


def claim(conn, limit: int) -> list[dict]:
    return conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', clock_timestamp(), %s, 300)", (limit,)
    ).fetchall()


def keys(rows: list[dict]) -> set[tuple]:
    return {(r["canonical_symbol"], r["timeframe"], r["task_kind"]) for r in rows}


def test_both_claim_plans_take_the_listing_in_its_order(conn):
    conn.execute(
        "INSERT INTO tickagg.core_asset_registry_all (canonical_symbol, asset_class, calendar_code)"
        " SELECT 'P' || lpad(i::text, 4, '0'), 'crypto',"
        " (ARRAY['crypto_24x7', 'us_equity', 'forex_24x5'])[1 + i %% 3]"
        " FROM generate_series(1, %s) AS i",
        (SYMBOLS,),
    )
    h.sync(conn, dt.datetime(2025, 10, 1, tzinfo=UTC))
    h.rollups_only(conn)
    # every rollup task due, cursors spread, some with invalidations: the walk
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() - interval '1 minute',"
        " last_agg_bar_ts_utc = last_agg_bar_ts_utc"
        " + abs(hashtext(canonical_symbol) % 500) * interval '5 minutes'"
        " WHERE task_kind = 'rollup'"
    )
    # no longest-wait share: the order under test is the priority order
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '0' WHERE setting_key = 'claim_aged_share'"
    )
    due = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE enabled AND next_run_at <= now()"
    ).fetchone()["n"]
    assert due > 10000
    expected = listing(conn, 40)
    assert order_keys(claim(conn, 40)) == order_keys(expected)
    # few due: most tasks scheduled later, a few due and a few woken by invalidations
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE status = 'idle' AND hashtext(canonical_symbol || timeframe) % 10 <> 0"
    )
    woken = {
        (r["canonical_symbol"], r["timeframe"], "rollup")
        for r in conn.execute(
            "INSERT INTO tickagg.agg_invalidations (canonical_symbol, timeframe, dirty_range)"
            " SELECT canonical_symbol, timeframe, tstzrange(last_agg_bar_ts_utc - interval '1 day',"
            " last_agg_bar_ts_utc - interval '23 hours')"
            " FROM tickagg.data_agg_state WHERE status = 'idle' AND next_run_at > now()"
            " AND task_kind = 'rollup' AND hashtext(canonical_symbol) % 7 = 0 LIMIT 30"
            " RETURNING canonical_symbol, timeframe"
        )
    }
    due = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state"
        " WHERE enabled AND status = 'idle' AND next_run_at <= now()"
    ).fetchone()["n"]
    assert 0 < due < 10000
    expected = listing(conn, 10000)
    assert woken and woken <= keys(expected)
    got = claim(conn, 10000)
    assert keys(got) == keys(expected)
    assert order_keys(got) == order_keys(expected)
    # only low-priority tasks due (gap scans, 150) behind rollups that are not
    conn.execute("DELETE FROM tickagg.agg_invalidations")
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE task_kind = 'rollup' AND status = 'idle'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = true,"
        " next_run_at = now() - interval '1 minute'"
        " WHERE task_kind = 'gap_scan' AND hashtext(canonical_symbol) % 3 = 0"
    )
    expected = listing(conn, 10000)
    assert expected and {r["task_kind"] for r in expected} == {"gap_scan"}
    got = claim(conn, 10000)
    assert keys(got) == keys(expected)
    assert order_keys(got) == order_keys(expected)
    assert claim(conn, 10) == []  # nothing due
