"""Batches of indicators tasks (agg_claim_batch + agg_run_indicators_batch): the
values equal the per-task path bar for bar on mixed batches (live bars, a
correction that rewinds a series, a series with nothing new, two timeframes), and
TA-Lib; a task whose lease was taken over is skipped in its batch; a SIGKILL
during batches loses and duplicates nothing.

Pairs of series carry identical bars: the P series are run by the per-task path
(claim, indicators_step, agg_finish per task), their B twins by the runner, whose
claim takes the due indicators tasks of one timeframe as a batch."""

from __future__ import annotations

import random
import uuid

import helpers as h
from test_batch import sigkill_runner_once_working
from test_indicators import START, STEPS, _check, _correct, _drive_indicators, _insert, _walk

from runner.loop import Runner, RunnerConfig

TIMEFRAMES = ("5m", "1h")
HISTORY = 300


def setup_pairs(conn, pairs: int, extra: int, seed: int, twins: bool = True) -> dict:
    """Register B0.. (and their P twins), only their indicators tasks enabled, and
    insert HISTORY bars of each series; returns the bars still to come per series
    name without its prefix, e.g. {("0", "5m"): [...]}."""
    rng = random.Random(seed)
    prefixes = ("B", "P") if twins else ("B",)
    for i in range(pairs):
        for p in prefixes:
            h.register(conn, f"{p}{i}", "crypto_24x7")
    h.sync(conn, START)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = (task_kind = 'indicators')")
    rest = {}
    for i in range(pairs):
        for tf in TIMEFRAMES:
            bars = _walk(rng, HISTORY + extra, STEPS[tf], 50.0 + 10 * i)
            for p in prefixes:
                _insert(conn, f"{p}{i}", tf, bars[:HISTORY])
            rest[str(i), tf] = bars[HISTORY:]
    return rest


def enable_only(conn, prefix: str) -> None:
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = (canonical_symbol LIKE %s)"
        " WHERE task_kind = 'indicators'",
        (prefix + "%",),
    )


def values(conn, sym: str, tf: str) -> list[tuple]:
    return [
        (r["ts_utc"], r["indicators"])
        for r in conn.execute(
            "SELECT ts_utc, indicators FROM tickagg.bar_indicators"
            " WHERE canonical_symbol = %s AND timeframe = %s ORDER BY ts_utc",
            (sym, tf),
        )
    ]


def indicator_batches(conn) -> list[dict]:
    """Indicators runs of more than one task that committed together (one started_at)."""
    return conn.execute(
        "SELECT started_at, count(*) AS n, array_agg(DISTINCT timeframe) AS timeframes"
        " FROM tickagg.ops_runlog WHERE task_kind = 'indicators' AND outcome = 'success'"
        " GROUP BY started_at HAVING count(*) > 1"
    ).fetchall()


def test_an_indicators_batch_equals_the_per_task_path_bar_for_bar(dsn, conn):
    pairs = 4
    rng = random.Random(2411)
    rest = setup_pairs(conn, pairs, extra=40, seed=2411)
    _drive_indicators(conn)  # the history, per task (a backfill is never batched)
    conn.execute("TRUNCATE tickagg.ops_runlog")
    taken = {key: 0 for key in rest}
    for round_no in range(4):
        for (i, tf), bars in rest.items():
            if i == "3":
                continue  # a series with nothing new: due by its recheck only
            n = rng.randint(1, 10)
            chunk, taken[i, tf] = bars[taken[i, tf] : taken[i, tf] + n], taken[i, tf] + n
            for p in ("B", "P"):
                _insert(conn, f"{p}{i}", tf, chunk)
        if round_no in (1, 2):
            # a correction in the middle of series 0: the same on both twins
            seed = rng.random()
            for p in ("B", "P"):
                _correct(conn, random.Random(seed), f"{p}0", "5m")
        conn.execute(
            "UPDATE tickagg.data_agg_state SET next_run_at = now() WHERE task_kind = 'indicators'"
        )
        enable_only(conn, "B")
        Runner(RunnerConfig(dsn=dsn)).run_due()
        enable_only(conn, "P")
        _drive_indicators(conn)
        for i in range(pairs):
            for tf in TIMEFRAMES:
                assert values(conn, f"B{i}", tf) == values(conn, f"P{i}", tf), (i, tf, round_no)
    batches = indicator_batches(conn)
    assert {tf for b in batches for tf in b["timeframes"]} >= set(TIMEFRAMES), batches
    assert max(b["n"] for b in batches) == pairs, "the quiet series, too, ran in a batch"
    for i in range(pairs):
        for tf in TIMEFRAMES:
            _check(conn, f"B{i}", tf)


def test_a_task_whose_lease_was_taken_over_is_skipped_in_its_indicators_batch(dsn, conn):
    rest = setup_pairs(conn, 3, extra=5, seed=2412, twins=False)
    _drive_indicators(conn)
    for (i, tf), bars in rest.items():
        if tf == "5m":
            _insert(conn, f"B{i}", tf, bars)
    before = {s: values(conn, s, "5m") for s in ("B0", "B1", "B2")}
    cursors = h.cursors(conn)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET next_run_at = now() + interval '1 hour'"
        " WHERE timeframe <> '5m'"
    )
    tasks = conn.execute(
        "SELECT * FROM tickagg.agg_claim_batch('prod', clock_timestamp(), 300, 10)"
    ).fetchall()
    assert sorted((t["canonical_symbol"], t["task_kind"]) for t in tasks) == [
        ("B0", "indicators"),
        ("B1", "indicators"),
        ("B2", "indicators"),
    ]
    # B1's lease expired and another runner took it over: a new token
    taken = h.take_over_lease(conn, "B1", "5m", "indicators")
    run_ids = [uuid.uuid4() for _ in tasks]
    rows = h.run_batch(conn, "agg_run_indicators_batch", "5m", tasks, run_ids)
    assert {r["canonical_symbol"]: r["outcome"] for r in rows} == {
        "B0": "success",
        "B1": "lease_lost",
        "B2": "success",
    }
    now = h.cursors(conn)
    assert now["B1", "5m", "indicators"] == cursors["B1", "5m", "indicators"]
    assert values(conn, "B1", "5m") == before["B1"]
    for s in ("B0", "B2"):
        assert now[s, "5m", "indicators"] > cursors[s, "5m", "indicators"]
        assert len(values(conn, s, "5m")) == len(before[s]) + 5
    b1 = conn.execute(
        "SELECT status, claim_token FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'B1' AND timeframe = '5m' AND task_kind = 'indicators'"
    ).fetchone()
    assert b1 == {"status": "running", "claim_token": taken}  # left to its new holder
    logged = conn.execute(
        "SELECT canonical_symbol, outcome FROM tickagg.ops_runlog WHERE run_id = ANY(%s)",
        (run_ids,),
    ).fetchall()
    assert sorted((r["canonical_symbol"], r["outcome"]) for r in logged) == [
        ("B0", "success"),
        ("B1", "lease_lost"),
        ("B2", "success"),
    ]
    # the new holder gives it back; then everything catches up exactly
    conn.execute("SELECT tickagg.agg_finish('B1', '5m', 'indicators', %s, 'release')", (taken,))
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    Runner(RunnerConfig(dsn=dsn)).run_due()
    for s in ("B0", "B1", "B2"):
        _check(conn, s, "5m")


def test_sigkill_during_indicators_batches_loses_and_duplicates_nothing(dsn, conn):
    seed = 2413
    rng = random.Random(seed)
    pairs = 16
    rest = setup_pairs(conn, pairs, extra=14 * 6, seed=seed, twins=False)
    _drive_indicators(conn)
    conn.execute("TRUNCATE tickagg.ops_runlog")
    cmd = h.tickagg_cmd(dsn, "run", "--workers", "1", "--lease-seconds", "2")
    last = h.cursors(conn)
    for k in range(14):
        for (i, tf), bars in rest.items():
            _insert(conn, f"B{i}", tf, bars[6 * k : 6 * (k + 1)])
        last = sigkill_runner_once_working(conn, cmd, rng.uniform(0.0, 0.3), last)
    assert indicator_batches(conn), "no indicators batch committed before the kills"
    h.run_until_idle_after_kills(dsn, conn)
    for i in range(pairs):
        for tf in TIMEFRAMES:
            _check(conn, f"B{i}", tf)  # every live bar: TA-Lib's values
    doubled = conn.execute(
        "SELECT canonical_symbol, timeframe, ts_utc FROM tickagg.bar_indicators"
        " GROUP BY 1, 2, 3 HAVING count(*) > 1 LIMIT 5"
    ).fetchall()
    assert doubled == []


def stored_state(conn, sym: str) -> dict:
    """A 5m series' stored indicators, checkpoints, task cursor and queued rewinds."""
    return {
        "rows": conn.execute(
            "SELECT ts_utc, key_set_id, vals FROM tickagg.derived_bar_indicators"
            " WHERE canonical_symbol = %s AND timeframe = '5m' ORDER BY ts_utc",
            (sym,),
        ).fetchall(),
        "checkpoints": conn.execute(
            "SELECT ts_utc, bar_no, params, state FROM tickagg.indicator_checkpoints"
            " WHERE canonical_symbol = %s AND timeframe = '5m' ORDER BY ts_utc",
            (sym,),
        ).fetchall(),
        "cursor": conn.execute(
            "SELECT last_agg_bar_ts_utc FROM tickagg.data_agg_state"
            " WHERE canonical_symbol = %s AND timeframe = '5m' AND task_kind = 'indicators'",
            (sym,),
        ).fetchone()["last_agg_bar_ts_utc"],
        "rewinds": conn.execute(
            "SELECT count(*) AS n FROM tickagg.indicator_rewinds"
            " WHERE canonical_symbol = %s AND timeframe = '5m'",
            (sym,),
        ).fetchone()["n"],
    }


def test_a_mixed_indicators_batch_equals_each_task_run_alone_row_for_row(conn):
    """One batch of series in every state a run can start from: a first run, a
    queued correction (rewind), a resume from an every-N checkpoint, a resume from
    an end-of-run checkpoint off the grid, checkpoints of changed settings (the
    whole series recomputed). The B series run in that one batch, their P twins
    each alone (indicators_step + agg_finish); values, checkpoints, cursors and
    each run's result must be equal."""
    rng = random.Random(2414)
    kinds = ("first", "rewind", "grid", "off_grid", "settings")
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '64'"
        " WHERE setting_key = 'indicators_checkpoint_every'"
    )
    for k in range(len(kinds) * 2):
        for p in ("B", "P"):
            h.register(conn, f"{p}{k}", "crypto_24x7")
    h.sync(conn, START)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false")
    rest = {}
    for k in range(len(kinds) * 2):
        kind = kinds[k % len(kinds)]
        history = 256 if kind == "grid" else 300  # the grid series ends on a checkpoint
        bars = _walk(rng, history + 3, STEPS["5m"], 40.0 + 7 * k)
        for p in ("B", "P"):
            _insert(conn, f"{p}{k}", "5m", bars[:history])
        rest[k] = bars[history:]

    def drive(kind_names: tuple[str, ...]) -> None:
        conn.execute(
            "UPDATE tickagg.data_agg_state SET enabled = (timeframe = '5m'"
            " AND task_kind = 'indicators' AND substr(canonical_symbol, 2)::int = ANY(%s)),"
            " next_run_at = now()",
            ([k for k in range(len(kinds) * 2) if kinds[k % len(kinds)] in kind_names],),
        )
        _drive_indicators(conn, max_bars=10_000)

    # the settings series' history under another RSI period, the rest's under the default
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '9' WHERE setting_key = 'indicator_rsi_period'"
    )
    drive(("settings",))
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '14'"
        " WHERE setting_key = 'indicator_rsi_period'"
    )
    drive(("rewind", "grid", "off_grid"))
    for k, bars in rest.items():
        new = bars[: 1 + k % 3]
        seed = rng.random()
        for p in ("B", "P"):
            _insert(conn, f"{p}{k}", "5m", new)
            if kinds[k % len(kinds)] == "rewind":
                _correct(conn, random.Random(seed), f"{p}{k}", "5m")
    assert conn.execute("SELECT count(*) AS n FROM tickagg.indicator_rewinds").fetchone()["n"] > 0

    conn.execute(
        "UPDATE tickagg.data_agg_state"
        " SET enabled = (timeframe = '5m' AND task_kind = 'indicators'), next_run_at = now()"
    )
    claimed = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300) ORDER BY canonical_symbol"
    ).fetchall()
    batch = [t for t in claimed if t["canonical_symbol"].startswith("B")]
    assert len(batch) == len(kinds) * 2
    rows = h.run_batch(conn, "agg_run_indicators_batch", "5m", batch, [uuid.uuid4() for _ in batch])
    batched = {r["canonical_symbol"]: r["result"] for r in rows}
    alone = {
        t["canonical_symbol"]: h.indicators_run(conn, t)
        for t in claimed
        if t["canonical_symbol"].startswith("P")
    }
    for k in range(len(kinds) * 2):
        assert batched[f"B{k}"] == alone[f"P{k}"], (kinds[k % len(kinds)], k)
        assert stored_state(conn, f"B{k}") == stored_state(conn, f"P{k}"), (
            kinds[k % len(kinds)],
            k,
        )
    # each state was met (series k gets 1 + k % 3 new bars): a rewind taken, a
    # resume from the grid checkpoint (kept) and from an end-of-run checkpoint off
    # the grid (superseded), the changed settings' series and the first runs
    # computed from bar 0
    results = {kinds[k]: batched[f"B{k}"] for k in range(len(kinds))}
    bar_nos = {
        kinds[k]: [c["bar_no"] for c in stored_state(conn, f"B{k}")["checkpoints"]]
        for k in range(len(kinds))
    }
    assert results["rewind"]["rewound_to"] is not None
    assert results["grid"]["bars_computed"] == 3 and 256 in bar_nos["grid"]
    assert results["off_grid"]["bars_computed"] == 1
    assert 300 not in bar_nos["off_grid"] and 301 in bar_nos["off_grid"]
    assert results["settings"]["resumed_after"] == "-infinity"
    assert results["settings"]["bars_computed"] == 302
    assert results["first"]["resumed_after"] == "-infinity"
    assert results["first"]["bars_computed"] == 301
