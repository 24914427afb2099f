"""Batches of rollup tasks (agg_claim_batch + agg_run_rollup_batch): the bars equal
the oracle (so the per-task path) on mixed batches of calendars, live buckets,
late data, partial buckets, a symbol with nothing to do and a task whose lease
was taken over; a SIGKILL during batches loses and duplicates nothing; concurrent
claims never take one task twice.

Buckets close when their source has passed them: with a 3000-day aggregation
delay only the data does that (not the clock), so a test appends minutes "live"
to 2025 data, ahead of every cursor, the way a market's next minute arrives."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import helpers as h
import pytest
from oracle import Bar1m, diff
from test_oracle import SYMBOLS, assert_matches, build, load, oracle

from runner.loop import Runner, RunnerConfig

UTC = dt.UTC
D = dt.date
T0 = dt.datetime(2025, 10, 30, 15, 0, tzinfo=UTC)
# where the history loaded first ends: inside a session of every calendar
CUTS = {"nse_equity": dt.datetime(2025, 10, 30, 6, 0, tzinfo=UTC)}
BIG_DELAY = "3000 days"

# (symbol, calendar, base price, vwap, trade_count, source)
MIXED = (
    ("C1", "crypto_24x7", 100.0, True, True, "polygon_historical"),
    ("C2", "crypto_24x7", 200.0, True, True, "polygon_historical"),
    ("F1", "forex_24x5", 1.25, False, False, "historical_aggregated"),
    ("F2", "forex_24x5", 150.0, True, True, "polygon_historical"),
    ("U1", "us_equity", 50.0, True, True, "polygon_historical"),
    ("U2", "us_equity", 300.0, True, True, "polygon_historical"),
    ("N1", "nse_equity", 900.0, True, True, "polygon_historical"),
    ("N2", "nse_equity", 2200.0, True, True, "polygon_historical"),
    ("QUIET", "crypto_24x7", 10.0, True, True, "polygon_historical"),
)


def set_delay(conn, delay: str) -> None:
    conn.execute(
        "UPDATE tickagg.data_agg_state SET aggregation_delay = %s::interval, next_run_at = now()"
        " WHERE task_kind = 'rollup'",
        (delay,),
    )


def split(data):
    """Each symbol's bars before its calendar's cut, and a function giving the rest
    by minutes after the cut: rest(sym, from_minute, to_minute)."""
    before = {}
    for sym, (cal, bars) in data.items():
        before[sym] = (cal, {t: b for t, b in bars.items() if t < CUTS.get(cal, T0)})

    def rest(sym: str, start: int, end: int | None = None) -> list:
        cal, bars = data[sym]
        first = CUTS.get(cal, T0) + dt.timedelta(minutes=start)
        last = None if end is None else CUTS.get(cal, T0) + dt.timedelta(minutes=end)
        return sorted((t, b) for t, b in bars.items() if t >= first and (last is None or t < last))

    return before, rest


def append(conn, loaded, sym: str, rows) -> None:
    h.insert_bars(conn, sym, dict(rows))
    loaded[sym][1].update(rows)


def assert_matches_below_cursors(conn, agg_start, loaded) -> int:
    """The oracle's bars equal the materialised ones for every bucket behind its
    task's cursor (the closed buckets); returns how many were compared."""
    cur = {(s, tf): c for (s, tf, kind), c in h.cursors(conn).items() if kind == "rollup"}
    exp = {k: v for k, v in oracle(agg_start, loaded).items() if k[2] < cur[k[0], k[1]]}
    act = {k: v for k, v in h.derived(conn, loaded).items() if k[2] < cur[k[0], k[1]]}
    problems = diff(exp, act)
    assert not problems, "\n".join(problems)
    return len(exp)


def batches_run(conn) -> list[dict]:
    """Runs of more than one task that committed together (a batch shares started_at)."""
    return conn.execute(
        "SELECT started_at, min(timeframe) AS timeframe, count(*) AS n,"
        " array_agg(canonical_symbol ORDER BY canonical_symbol) AS symbols"
        " FROM tickagg.ops_runlog WHERE task_kind = 'rollup' AND outcome = 'success'"
        " GROUP BY started_at HAVING count(*) > 1"
    ).fetchall()


def live_setup(dsn: str, conn, seed: int, symbols=MIXED):
    """History before T0 caught up per task, the big delay set: every cursor then
    stands at its symbol's last minute."""
    agg_start, data = build(seed, ranges=((D(2025, 10, 27), D(2025, 11, 4)),), symbols=symbols)
    loaded, rest = split(data)
    load(conn, agg_start, loaded)
    h.rollups_only(conn)
    set_delay(conn, BIG_DELAY)
    h.drive(dsn)
    return agg_start, data, loaded, rest


def run_batched(dsn: str, **cfg) -> list[dict]:
    return Runner(RunnerConfig(dsn=dsn, **cfg)).run_due()


def test_a_mixed_batch_equals_the_oracle(dsn, conn):
    seed = 2401
    rng = random.Random(seed)
    agg_start, data, loaded, rest = live_setup(dsn, conn, seed)
    assert assert_matches_below_cursors(conn, agg_start, loaded) > 1000
    conn.execute("TRUNCATE tickagg.ops_runlog")

    # live: each symbol but QUIET gets its next 23 minutes (closing 5m buckets; the
    # last one stays open: partial until more comes), in every calendar
    for sym in data:
        if sym != "QUIET":
            append(conn, loaded, sym, rest(sym, 0, 23))
    # late: minutes into holes behind the cursors of C1 and U1, and a correction
    # of an existing C2 bar by a higher-ranked source
    for sym in ("C1", "U1"):
        cal, bars = loaded[sym]
        have = sorted(t for t in bars if t < T0 - dt.timedelta(hours=2))
        holes = [
            t + dt.timedelta(minutes=1)
            for t, n in zip(have, have[1:], strict=False)
            if n - t > dt.timedelta(minutes=1)
        ]
        late = {t: Bar1m(10.0, 10.5, 9.5, 10.25, 7.0, None, None, "polygon_historical")
                for t in rng.sample(holes, 2)}  # fmt: skip
        append(conn, loaded, sym, late)
    fixed = max(t for t in loaded["C2"][1] if t < T0 - dt.timedelta(hours=3))
    good = Bar1m(1.0, 2.0, 0.5, 1.5, 3.0, 1.25, 4, "live_gap_filled")
    h.ingest(conn, [("C2", fixed, good)], "correction.csv")
    loaded["C2"][1][fixed] = good

    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    run_batched(dsn)
    batches = batches_run(conn)
    assert batches, "no batch ran"
    five = [b for b in batches if b["timeframe"] == "5m"]
    # 5m tasks of every calendar, QUIET's (nothing to do), the late C1 and U1
    assert any(set(b["symbols"]) >= {"C1", "U1", "N1", "F1", "QUIET"} for b in five), five
    assert_matches_below_cursors(conn, agg_start, loaded)

    # more live minutes, batch after batch, then everything closed by the clock
    for step in range(3):
        for sym in data:
            if sym != "QUIET":
                append(conn, loaded, sym, rest(sym, 23 + 40 * step, 63 + 40 * step))
        conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
        run_batched(dsn)
        assert_matches_below_cursors(conn, agg_start, loaded)
    for sym in data:
        append(conn, loaded, sym, rest(sym, 143 if sym != "QUIET" else 0))
    set_delay(conn, "2 minutes")
    run_batched(dsn)
    assert_matches(conn, agg_start, loaded)
    assert h.pending_invalidations(conn) == 0
    assert all(data[s][1].keys() <= loaded[s][1].keys() for s in data)  # all of it loaded


def test_a_task_whose_lease_was_taken_over_is_skipped_in_its_batch(dsn, conn):
    agg_start, data, loaded, rest = live_setup(dsn, conn, 2402, MIXED[:4])
    for sym in data:
        append(conn, loaded, sym, rest(sym, 0, 30))
    before = h.derived(conn)
    cursors = h.cursors(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE timeframe <> '5m'"
    )
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE timeframe = '5m'")
    tasks = conn.execute(
        "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 10)"
    ).fetchall()
    assert sorted(t["canonical_symbol"] for t in tasks) == ["C1", "C2", "F1", "F2"]
    # F1's lease expired and another runner took it over: a new token
    taken = h.take_over_lease(conn, "F1", "5m", "rollup")
    run_ids = [uuid.uuid4() for _ in tasks]
    rows = h.run_batch(conn, "agg_run_rollup_batch", "5m", tasks, run_ids)
    outcome = {r["canonical_symbol"]: r["outcome"] for r in rows}
    assert outcome == {"C1": "success", "C2": "success", "F1": "lease_lost", "F2": "success"}
    after = h.derived(conn)
    new = {k[0] for k in after.keys() - before.keys() if k[1] == "5m"}
    assert "F1" not in new and "C1" in new, new
    # ... though F1 had 5m buckets to close
    assert any(k[0] == "F1" and k[1] == "5m" and k[2] >= T0 for k in oracle(agg_start, loaded))
    now = h.cursors(conn)
    assert now["F1", "5m", "rollup"] == cursors["F1", "5m", "rollup"]
    assert all(now[s, "5m", "rollup"] > cursors[s, "5m", "rollup"] for s in new)
    f1 = conn.execute(
        "SELECT status, claim_token FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'F1' AND timeframe = '5m' AND task_kind = 'rollup'"
    ).fetchone()
    assert f1 == {"status": "running", "claim_token": taken}  # left to its new holder
    logged = conn.execute(
        "SELECT canonical_symbol, outcome FROM tickagg.ops_runlog WHERE run_id = ANY(%s)",
        (run_ids,),
    ).fetchall()
    assert sorted((r["canonical_symbol"], r["outcome"]) for r in logged) == [
        ("C1", "success"),
        ("C2", "success"),
        ("F1", "lease_lost"),
        ("F2", "success"),
    ]
    # the new holder gives it back; then everything catches up exactly
    conn.execute("SELECT tickagg.agg_finish('F1', '5m', 'rollup', %s, 'release')", (taken,))
    for sym in data:
        append(conn, loaded, sym, rest(sym, 30))
    set_delay(conn, "2 minutes")
    run_batched(dsn)
    assert_matches(conn, agg_start, loaded)


def test_a_backfill_is_not_batched_and_a_claim_matches_the_due_list(dsn, conn):
    """agg_claim_batch repeats agg_get_due_tasks' due condition and order: the batch
    it claims is the due list's rollup tasks of the head's timeframe with few
    buckets pending; a task with a backfill pending runs alone."""
    syms = [(f"S{i}", "crypto_24x7", 100.0, True, True, "polygon_historical") for i in range(6)]
    agg_start, data = build(2403, ranges=((D(2025, 10, 27), D(2025, 10, 29)),), symbols=syms)
    load(conn, agg_start, data)
    h.rollups_only(conn)
    # S0..S5 hold days of bars past every cursor: backfills, one task a run
    head = conn.execute(
        "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 50)"
    ).fetchall()
    assert len(head) == 1
    t = head[0]
    conn.execute(
        "SELECT tickagg.agg_finish(%s, %s, 'rollup', %s, 'release')",
        (t["canonical_symbol"], t["timeframe"], t["claim_token"]),
    )
    set_delay(conn, BIG_DELAY)
    h.drive(dsn)
    for sym, (_, bars) in data.items():
        last = max(bars)
        h.insert_bars(conn, sym, {last + dt.timedelta(minutes=i): bars[last] for i in (1, 2, 3)})
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    due = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', clock_timestamp(), 1000)"
    ).fetchall()
    claimed = conn.execute(
        "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 4)"
    ).fetchall()

    # the same order: tasks that tie on every key of it (the same timeframe and
    # cursor) may come in either order, so they are compared by those keys
    def key(t: dict) -> tuple:
        return t["timeframe"], t["cursor_ts"]

    assert key(claimed[0]) == key(due[0]), (claimed, due[:6])
    expected = [
        key(t) for t in due if t["task_kind"] == "rollup" and t["timeframe"] == due[0]["timeframe"]
    ][:4]
    assert len(expected) == 4
    assert sorted(key(t) for t in claimed) == sorted(expected), (claimed, due[:6])


def test_concurrent_batch_claims_never_take_a_task_twice(dsn, conn):
    for i in range(30):
        h.register(conn, f"Q{i:02d}", ("crypto_24x7", "forex_24x5", "us_equity")[i % 3])
    h.sync(conn, dt.datetime(2025, 10, 1, tzinfo=UTC))
    h.rollups_only(conn)
    # every task due at once (after sync only the 5m tasks are: the levels above
    # wait for their source), so four claimers compete for 30 x 7 of them
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    due = {
        (t["canonical_symbol"], t["timeframe"])
        for t in conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', clock_timestamp(), 10000)"
        )
    }
    assert len(due) == 30 * 7
    claims: list[list[tuple]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(i: int) -> None:
        try:
            with h.connect(dsn) as c:
                start.wait()
                while rows := c.execute(
                    "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 7)"
                ).fetchall():
                    claims[i].extend((r["canonical_symbol"], r["timeframe"]) for r in rows)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [k for c in claims for k in c]
    assert len(every) == len(set(every)), "a task was claimed twice"
    assert set(every) == due
    assert sum(1 for c in claims if c) > 1, "one claimer took everything: no concurrency tested"


COMMITTED_CURSOR_MOVES = (
    "SELECT count(*) AS n FROM tickagg.ops_runlog WHERE cursor_to > cursor_from"
)


def sigkill_runner_once_working(
    conn, cmd: list[str], seconds: float, last, working: str = COMMITTED_CURSOR_MOVES
) -> dict:
    """Start a runner, wait until it is working (its start-up takes seconds on a
    busy machine): until the one-row query `working` answers otherwise than before
    it started, by default once it has committed a run that moved a cursor.
    SIGKILL it `seconds` later and check that no cursor moved back from `last`.
    Returns the cursors now."""
    before = conn.execute(working).fetchone()
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(
            cmd, cwd=h.ROOT, env=h.cli_env(), stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + 120
        while conn.execute(working).fetchone() == before:
            if p.poll() is not None or time.monotonic() > deadline:
                err.seek(0)
                pytest.fail(f"the runner never worked (exit {p.poll()}): {err.read()[-3000:]}")
            time.sleep(0.02)
        time.sleep(seconds)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    now = h.cursors(conn)
    back = {k: (last[k], v) for k, v in now.items() if k in last and v < last[k]}
    assert not back, f"cursors moved back: {back}"
    return now


def test_sigkill_during_batches_loses_and_duplicates_nothing(dsn, conn):
    seed = 2404
    rng = random.Random(seed)
    syms = [
        (f"K{i:02d}", ("crypto_24x7", "forex_24x5")[i % 2], 100.0 + i, True, True,
         "polygon_historical")
        for i in range(24)
    ]  # fmt: skip
    agg_start, data, loaded, rest = live_setup(dsn, conn, seed, syms)
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2")
    last = h.cursors(conn)
    moved = 0
    for k in range(14):
        for sym in data:
            append(conn, loaded, sym, rest(sym, 20 * k, 20 * (k + 1)))
        # the minutes make the 5m tasks due; their finishes wake the levels above
        conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE timeframe = '5m'")
        now = sigkill_runner_once_working(conn, cmd, rng.uniform(0.0, 0.4), last)
        moved += sum(now[key] != last[key] for key in now)
        last = now
    assert moved > 0, "the runner never got to work before being killed"
    assert batches_run(conn), "no batch committed before the kills"
    for sym in data:
        append(conn, loaded, sym, rest(sym, 280))
    set_delay(conn, "2 minutes")
    h.run_until_idle_after_kills(dsn, conn)
    for key, v in h.cursors(conn).items():
        assert v >= last[key]
    assert_matches(conn, agg_start, loaded)
    # data was only appended, each bucket closed once: no bar written twice
    revised = conn.execute(
        "SELECT canonical_symbol, timeframe, ts_utc, derivation_version"
        " FROM tickagg.derived_data_bars"
        " WHERE derivation_version <> 1 OR deleted_at IS NOT NULL LIMIT 5"
    ).fetchall()
    assert revised == []


def test_derived_bars_are_written_by_one_statement_with_one_result_shape(dsn, conn):
    """Every path writes derived bars through rollup_ranges: a batch's symbols of
    one timeframe and a cascade's levels of one symbol alike, with one row of
    counts per symbol and timeframe (issue 18 item 6: rollup_ranges_batch repeated
    its upsert and soft-delete and returned another shape). Its counts are those of
    the bars it wrote, and the bars equal the oracle."""
    writers = conn.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'tickagg'::regnamespace"
        " AND prosrc ~* 'INSERT INTO tickagg\\.derived_data_bars' ORDER BY 1"
    ).fetchall()
    assert [r["proname"] for r in writers] == ["rollup_ranges"]

    agg_start, data = build(5, symbols=SYMBOLS[:2])
    load(conn, agg_start, data)
    elements = [(sym, tf) for sym in data for tf in ("5m", "15m")]
    week = "[2025-03-05 00:00Z, 2025-03-08 00:00Z)"
    call = "SELECT * FROM tickagg.rollup_ranges(%s, %s, %s::tstzmultirange[], '1m')"
    args = ([s for s, _ in elements], [t for _, t in elements], [f"{{{week}}}"] * len(elements))
    rows = conn.execute(call, args).fetchall()
    assert [(r["canonical_symbol"], r["timeframe"]) for r in rows] == elements
    for r in rows:
        stored = conn.execute(
            "SELECT count(*) AS n FROM tickagg.derived_data_bars WHERE canonical_symbol = %s"
            " AND timeframe = %s AND ts_utc <@ %s::tstzrange",
            (r["canonical_symbol"], r["timeframe"], week),
        ).fetchone()["n"]
        assert r["bars_written"] == r["buckets_with_data"] == stored > 0, r
    # identical content is not rewritten
    assert sum(r["bars_written"] for r in conn.execute(call, args).fetchall()) == 0
    h.drive(dsn)
    assert_matches(conn, agg_start, data)
