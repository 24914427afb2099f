"""The ohlcv_* real-time views mid catch-up, their plans, and derived_rebuild_range.

View semantics (README, "Real-time views"): for each task, the materialised bars
before its cursor plus the buckets from the cursor on aggregated from 1-minute
bars up to the newest minute. So at any moment a view equals the full-recompute
oracle over the current 1m data, except materialised buckets that pending
invalidations (of that timeframe or any below it) have not reached yet; those
may be stale until their tasks run, and only those.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import helpers as h
import psycopg
import pytest
from oracle import CONTENT_FIELDS, TIMEFRAMES, Bar1m, diff, expected_bars, random_bars
from psycopg import sql

from runner import queries

UTC = dt.UTC
D = dt.date
AGG_START = dt.datetime(2025, 3, 3, tzinfo=UTC)
SYMBOLS = (
    ("FXV", "forex_24x5", 1.25, D(2025, 3, 2), D(2025, 3, 14)),
    ("EQV", "us_equity", 400.0, D(2025, 3, 3), D(2025, 3, 14)),
)
RANK = {tf: i for i, tf in enumerate(TIMEFRAMES)}


def setup_history(conn, rng, *, share: float = 1.0):
    """Register, sync (buckets close at the newest minute) and load the first `share`
    of each symbol's history. Returns {symbol: (calendar, loaded bars, rest)}."""
    data = {}
    for sym, cal, base, first, last in SYMBOLS:
        h.register(conn, sym, cal)
        bars = random_bars(cal, first, last, rng, base=base, hole_rate=0.01)
        order = sorted(bars)
        cut = int(len(order) * share)
        data[sym] = (cal, {t: bars[t] for t in order[:cut]}, {t: bars[t] for t in order[cut:]})
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '100 years'")
    for sym, (_, bars, _) in data.items():
        h.insert_bars(conn, sym, bars)
    return data


def oracle(data):
    out = {}
    for sym, (cal, bars, _) in data.items():
        out.update(expected_bars(sym, cal, bars, AGG_START))
    return out


def view_bars(conn, symbols) -> dict:
    out = {}
    for tf, view in queries.OHLCV_VIEWS.items():
        q = sql.SQL("SELECT * FROM tickagg.{} WHERE canonical_symbol = ANY(%s)").format(
            sql.Identifier(view)
        )
        for r in conn.execute(q, (list(symbols),)):
            key = (r["canonical_symbol"], tf, r["bucket"].astimezone(UTC))
            assert key not in out, f"{key} twice in {view}"
            bar = {f: r[f] for f in CONTENT_FIELDS}
            bar["bucket_end"] = bar["bucket_end"].astimezone(UTC)
            out[key] = bar
    return out


def pending(conn) -> list[dict]:
    return conn.execute(
        "SELECT canonical_symbol, timeframe, dirty_range FROM tickagg.agg_invalidations"
    ).fetchall()


def stale_allowed(key, bar, dirty) -> bool:
    """A bucket may be stale while an invalidation of its timeframe or a lower one
    overlapping it is pending."""
    sym, tf, start = key
    end = bar["bucket_end"]
    return any(
        d["canonical_symbol"] == sym
        and RANK[d["timeframe"]] <= RANK[tf]
        and (d["dirty_range"].lower is None or d["dirty_range"].lower < end)
        and (d["dirty_range"].upper is None or start < d["dirty_range"].upper)
        for d in dirty
    )


def check_views(conn, data, exp=None) -> tuple[int, int]:
    """Compare every view with the oracle (`exp`, computed from `data` when not
    given); differences only where allowed. Returns (pending invalidations, stale
    buckets)."""
    exp = oracle(data) if exp is None else exp
    act = view_bars(conn, data)
    dirty = pending(conn)
    stale = set()
    for k in set(exp) | set(act):
        if diff({k: exp[k]} if k in exp else {}, {k: act[k]} if k in act else {}):
            stale.add(k)
    bad = [k for k in stale if not stale_allowed(k, exp.get(k) or act[k], dirty)]
    assert not bad, "\n".join(
        diff({k: exp[k] for k in bad if k in exp}, {k: act[k] for k in bad if k in act})
    )
    if not dirty:
        assert not stale
    return len(dirty), len(stale)


def cursor_behind(conn) -> int:
    """Tasks whose cursor is still before the newest minute of their symbol."""
    return conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state AS s"
        " WHERE s.last_agg_bar_ts_utc <= (SELECT max(b.ts_utc) FROM tickagg.data_bars AS b"
        "  WHERE b.canonical_symbol = s.canonical_symbol)"
    ).fetchone()["n"]


def fresh(rng, around, source="live_aggregated") -> Bar1m:
    p = round(around * 1024 * (1 + rng.uniform(-0.01, 0.01))) / 1024
    return Bar1m(
        p, p + 3 / 1024, p - 3 / 1024, p + 1 / 1024, float(rng.randint(1, 40)), p, 5, source
    )


@pytest.mark.parametrize("seed", [11, 2025])
def test_views_equal_oracle_mid_catch_up(dsn, conn, seed):
    print(f"real-time views seed={seed}")
    rng = random.Random(seed)
    # Semantics only: JIT compiling the many view queries here would only cost time
    # (test_one_symbol_one_day_uses_the_primary_key checks plans).
    conn.execute("SET jit = off")
    data = setup_history(conn, rng, share=0.6)
    exact_mid_way = 0
    stale_seen = 0
    claims = 0
    for round_no in range(5):
        exp = oracle(data)
        # a few claims: cursors anywhere between their first bucket and the frontier
        for _ in range(rng.randint(2, 4)):
            k = rng.randint(1, 9)
            claims += h.partial_drive(dsn, k, max_windows=rng.choice((1, 4, 50)))["claims"]
            n_dirty, n_stale = check_views(conn, data, exp)
            stale_seen += n_stale
            if n_dirty == 0 and cursor_behind(conn):
                exact_mid_way += 1
        # late data behind the cursors (corrections by a higher-ranked source, deleted
        # minutes) and new minutes after them
        for sym, (_, bars, rest) in data.items():
            existing = sorted(bars)
            behind = existing[: len(existing) * (round_no + 1) // 8]
            corrected = {t: fresh(rng, bars[t].open) for t in rng.sample(behind, 5)}
            res = h.ingest(conn, [(sym, t, b) for t, b in corrected.items()])
            assert res["rows_landed"] == 5, res
            bars.update(corrected)
            gone = rng.sample(behind, 5)
            conn.execute(
                "DELETE FROM tickagg.data_bars WHERE canonical_symbol = %s AND ts_utc = ANY(%s)",
                (sym, gone),
            )
            for t in gone:
                bars.pop(t)
            news = dict(list(rest.items())[: rng.randint(0, 600)])
            for t in news:
                rest.pop(t)
            h.insert_bars(conn, sym, news)
            bars.update(news)
        exp = oracle(data)
        stale_seen += check_views(conn, data, exp)[1]
        # work off the invalidations a few claims at a time; the catch-up goes on
        for _ in range(60):
            if not pending(conn):
                break
            claims += h.partial_drive(dsn, 7, max_windows=20)["claims"]
            stale_seen += check_views(conn, data, exp)[1]
        if not pending(conn) and cursor_behind(conn):
            assert check_views(conn, data, exp) == (0, 0)
            exact_mid_way += 1
    print(f"{claims} claims; exact mid-way checks {exact_mid_way}; stale buckets seen {stale_seen}")
    assert exact_mid_way >= 3
    assert stale_seen > 0  # the staleness rule was exercised, not vacuous
    h.drive(dsn)
    assert check_views(conn, data) == (0, 0)


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def test_one_symbol_one_day_uses_the_primary_key(dsn, conn):
    rng = random.Random(5)
    data = setup_history(conn, rng)
    h.drive(dsn)
    conn.execute("ANALYZE tickagg.derived_data_bars")
    conn.execute("ANALYZE tickagg.data_bars")
    day = dt.datetime(2025, 3, 11, tzinfo=UTC)
    params = ("FXV", day, day + dt.timedelta(days=1))
    query = (
        "SELECT * FROM tickagg.ohlcv_1hour"
        " WHERE canonical_symbol = %s AND bucket >= %s AND bucket < %s"
    )
    with psycopg.connect(dsn, autocommit=True) as c:
        # server-side parameters ($1, $2, $3), as an application would send them
        (plan_json,) = c.execute(
            "EXPLAIN (FORMAT JSON, SUMMARY) " + query, params, prepare=False
        ).fetchone()
    plan = plan_json[0] if isinstance(plan_json, list) else json.loads(plan_json)[0]
    nodes = list(_plan_nodes(plan["Plan"]))
    pk_scans = [
        n
        for n in nodes
        # a bitmap index scan names the index only; the pkey is derived_data_bars'
        if n.get("Node Type") in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
        and n.get("Index Name") == "derived_data_bars_pkey"
    ]
    print(f"planning time {plan['Planning Time']:.3f} ms; nodes: {[n['Node Type'] for n in nodes]}")
    assert pk_scans, json.dumps(plan, indent=1)[:4000]
    assert "ts_utc" in pk_scans[0].get("Index Cond", ""), pk_scans[0]
    assert not [
        n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in (
            "derived_data_bars", "data_bars")
    ]  # fmt: skip
    assert "Planning Time" in plan
    # a one-symbol one-day query is cheap by the planner's own estimate: never JIT compiled
    assert "JIT" not in plan, (plan["Plan"]["Total Cost"], plan.get("JIT"))
    rows = conn.execute(query, params).fetchall()
    assert len(rows) >= 12  # a day of hourly bars (random holes may remove a few)
    assert all(r["is_materialized"] for r in rows)
    exp = oracle(data)
    assert not diff(
        {k: v for k, v in exp.items() if k[:2] == ("FXV", "1h") and day <= k[2] < params[2]},
        {
            ("FXV", "1h", r["bucket"].astimezone(UTC)): {
                **{f: r[f] for f in CONTENT_FIELDS},
                "bucket_end": r["bucket_end"].astimezone(UTC),
            }
            for r in rows
        },
    )


# --- derived_rebuild_range ------------------------------------------------------------


def rebuild(conn, sym, tf, start, end) -> dict:
    return conn.execute(
        "SELECT tickagg.derived_rebuild_range(p_canonical_symbol => %s, p_timeframe => %s,"
        " p_from => %s, p_to => %s) AS r",
        (sym, tf, start, end),
    ).fetchone()["r"]


def assert_oracle(conn, data):
    problems = diff(oracle(data), h.derived(conn, data))
    assert not problems, "\n".join(problems)


def test_rebuild_repairs_a_corrupted_bar_and_cascades(dsn, conn):
    rng = random.Random(8)
    data = setup_history(conn, rng)
    conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '2 minutes'")
    h.drive(dsn)
    assert_oracle(conn, data)
    meta_other = h.all_rows_meta(conn, "EQV")
    t = dt.datetime(2025, 3, 11, 14, 0, tzinfo=UTC)
    # corrupt the 1h bar directly (a bug, a manual edit): the 4h above follows it
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET high = high + 1, volume = volume + 7"
        " WHERE canonical_symbol = 'FXV' AND timeframe = '1h' AND ts_utc = %s",
        (t,),
    )
    h.drive(dsn)
    wrong = diff(oracle(data), h.derived(conn, data))
    assert any("'1h'" in p for p in wrong) and any("'4h'" in p for p in wrong), wrong
    assert not any("'30m'" in p for p in wrong)

    res = rebuild(conn, "FXV", "1h", t + dt.timedelta(minutes=20), t + dt.timedelta(minutes=21))
    assert res["bars_written"] == 1 and res["buckets_rebuilt"] == 1, res
    assert (res["from"], res["to"]) == ("2025-03-11T14:00:00+00:00", "2025-03-11T15:00:00+00:00")
    h.drive(dsn)  # the cascade repairs 4h (and 1d, 1w only if they changed)
    assert_oracle(conn, data)

    # identical content: nothing is written, at any level, over any range
    for tf in TIMEFRAMES:
        res = rebuild(conn, "FXV", tf, "-infinity", "infinity")
        assert res["bars_written"] == 0 and res["bars_deleted"] == 0, (tf, res)
        assert res["buckets_rebuilt"] > 0
    assert h.pending_invalidations(conn) == 0
    assert h.all_rows_meta(conn, "EQV") == meta_other


def test_rebuild_stays_behind_the_cursor_and_validates(dsn, conn):
    rng = random.Random(9)
    data = setup_history(conn, rng, share=0.5)
    h.partial_drive(dsn, 14, max_windows=200)
    cur = h.cursors(conn)
    for tf in TIMEFRAMES:
        before = h.derived(conn, ["FXV"], with_meta=True)
        res = rebuild(conn, "FXV", tf, "2025-03-01", "2026-01-01")
        assert (
            res["to"] is None or dt.datetime.fromisoformat(res["to"]) <= cur[("FXV", tf, "rollup")]
        )
        assert res["bars_written"] == 0, (tf, res)
        assert h.derived(conn, ["FXV"], with_meta=True) == before
    # a range after the cursor is left to catch-up
    res = rebuild(
        conn,
        "FXV",
        "5m",
        cur[("FXV", "5m", "rollup")],
        cur[("FXV", "5m", "rollup")] + dt.timedelta(days=1),
    )
    assert (res["from"], res["buckets_rebuilt"]) == (None, 0), res
    # a deleted session is soft-deleted by a rebuild of that range
    fx_cal = data["FXV"][0]
    day = dt.datetime(2025, 3, 3, 22, tzinfo=UTC)  # forex trading date 2025-03-04
    assert fx_cal == "forex_24x5"
    conn.execute(
        "DELETE FROM tickagg.data_bars WHERE canonical_symbol = 'FXV'"
        " AND ts_utc >= %s AND ts_utc < %s",
        (day, day + dt.timedelta(hours=1)),
    )
    res = rebuild(conn, "FXV", "5m", day, day + dt.timedelta(hours=1))
    assert res["bars_deleted"] == 12 and res["buckets_rebuilt"] == 0, res
    for args, code in (
        (("NOPE", "5m", day, day), "TK004"),
        (("NOPE", "5m", day, day + dt.timedelta(hours=1)), "TK002"),
        (("FXV", "1m", day, day + dt.timedelta(hours=1)), "TK003"),
        (("FXV", "2h", day, day + dt.timedelta(hours=1)), "TK003"),
    ):
        with pytest.raises(psycopg.Error) as exc:
            rebuild(conn, *args)
        assert exc.value.sqlstate == code, (args, exc.value)
        assert exc.value.diag.message_hint
    conn.execute("DELETE FROM tickagg.data_agg_state WHERE canonical_symbol = 'EQV'")
    with pytest.raises(psycopg.Error) as exc:
        rebuild(conn, "EQV", "5m", day, day + dt.timedelta(hours=1))
    assert exc.value.sqlstate == "TK006"


def test_rebuild_cli(dsn, conn, role_dsn):
    rng = random.Random(10)
    data = setup_history(conn, rng)
    conn.execute("UPDATE tickagg.data_agg_state SET aggregation_delay = interval '2 minutes'")
    h.drive(dsn)
    # corrupt 5m and 1d bars; rebuild every level over two weeks, in daily chunks
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET close = low"
        " WHERE canonical_symbol = 'FXV' AND timeframe IN ('5m', '1d')"
        " AND ts_utc >= '2025-03-05' AND ts_utc < '2025-03-06 06:00'"
    )
    p = h.run_cli(
        role_dsn(), "rebuild", "--symbol", "FXV", "--timeframe", "all",
        "--from", "2025-03-04T00:00:00Z", "--to", "2025-03-08", "--chunk", "1d", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert [r["timeframe"] for r in out["timeframes"]] == list(TIMEFRAMES)
    assert out["left_to_runner"] == []
    by_tf = {r["timeframe"]: r for r in out["timeframes"]}
    assert by_tf["5m"]["bars_written"] > 200 and by_tf["1d"]["bars_written"] >= 1, out
    assert by_tf["5m"]["chunks"] == 4 and "\x1b" not in p.stderr  # no progress bar off a TTY
    h.drive(dsn)
    assert_oracle(conn, data)

    # one level only: the summary says who follows
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET open = low"
        " WHERE canonical_symbol = 'EQV' AND timeframe = '15m' AND ts_utc < '2025-03-06'"
    )
    p = h.run_cli(dsn, "rebuild", "--symbol", "EQV", "--timeframe", "15m")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "15m" in p.stdout and "30m, 1h, 4h, 1d, 1w" in p.stdout and "runner" in p.stdout
    h.drive(dsn)
    assert_oracle(conn, data)
    p = h.run_cli(dsn, "rebuild", "--symbol", "EQV", "--timeframe", "15m", "--json")
    assert all(r["bars_written"] == 0 for r in json.loads(p.stdout)["timeframes"])
    p = h.run_cli(dsn, "rebuild", "--symbol", "EQV", "--timeframe", "2h")
    assert p.returncode == 2 and "2h" in p.stderr


def test_rebuild_of_current_bars_is_a_no_op_with_inexact_floats(dsn, conn):
    """Prices and volumes that are not exact binary fractions (real data): a rebuild
    over bars that are current must still write nothing -- a rewrite that differs
    only in the rounding of a sum would bump derivation_version and change_no for
    nothing (and dirty every level above)."""
    rng = random.Random(12)
    h.register(conn, "RF", "crypto_24x7")
    h.sync(conn, AGG_START)
    h.rollups_only(conn)
    t0 = dt.datetime(2025, 3, 3, tzinfo=UTC)
    bars = {}
    for i in range(4 * 24 * 60):
        p = 100 + rng.random()
        bars[t0 + dt.timedelta(minutes=i)] = Bar1m(
            p, p + 0.1, p - 0.1, p + 0.01, rng.uniform(0.1, 50.0), p + rng.uniform(-0.1, 0.1), 3
        )
    h.insert_bars(conn, "RF", bars)
    h.drive(dsn)
    for tf in TIMEFRAMES:
        res = rebuild(conn, "RF", tf, "-infinity", "infinity")
        assert res["bars_written"] == 0, (tf, res)
