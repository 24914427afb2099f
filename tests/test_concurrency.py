"""Four `tickagg run --until-idle --workers 2` processes on one database: the
result equals the oracle and no task is ever held by two claims at once
(checked from a test-only audit trigger on data_agg_state)."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections import defaultdict

import helpers as h
from test_oracle import assert_matches, build, load

D = dt.date

AUDIT = """
CREATE TABLE public.claim_log (
    id bigserial PRIMARY KEY,
    canonical_symbol text, timeframe text, task_kind text,
    old_status text, new_status text, old_token uuid, new_token uuid,
    old_cursor timestamptz, new_cursor timestamptz,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.log_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.claim_log (canonical_symbol, timeframe, task_kind, old_status, new_status,
                                  old_token, new_token, old_cursor, new_cursor)
    VALUES (NEW.canonical_symbol, NEW.timeframe, NEW.task_kind, OLD.status, NEW.status,
            OLD.claim_token, NEW.claim_token, OLD.last_agg_bar_ts_utc, NEW.last_agg_bar_ts_utc);
    RETURN NULL;
END $$;
CREATE TRIGGER zz_log_claims AFTER UPDATE ON tickagg.data_agg_state FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.claim_token IS DISTINCT FROM NEW.claim_token)
EXECUTE FUNCTION public.log_claims();
"""


def claim_intervals(conn) -> dict:
    """Per task, [(token, claimed_at, ended_at)] in commit-serialised order."""
    out = defaultdict(list)
    open_claims = {}
    for r in conn.execute("SELECT * FROM public.claim_log ORDER BY id"):
        key = (r["canonical_symbol"], r["timeframe"], r["task_kind"])
        if r["old_token"] is not None:  # a claim ends (finish, or taken over)
            tok, start = open_claims.pop(key)
            assert tok == r["old_token"], (key, tok, r)
            out[key].append((tok, start, r["at"]))
        if r["new_token"] is not None:
            assert key not in open_claims, f"{key}: claimed while held: {r}"
            open_claims[key] = (r["new_token"], r["at"])
    assert not open_claims, f"claims never ended: {open_claims}"
    return out


def test_four_runners_match_oracle_without_double_claims(dsn, conn, tmp_path):
    syms = (
        ("C1", "crypto_24x7", 100.0, True, True, "polygon_historical"),
        ("C2", "crypto_24x7", 200.0, True, True, "polygon_historical"),
        ("F1", "forex_24x5", 1.25, False, False, "historical_aggregated"),
        ("U1", "us_equity", 50.0, True, True, "polygon_historical"),
        ("N1", "nse_equity", 900.0, True, True, "polygon_historical"),
    )
    agg_start, data = build(4242, ranges=((D(2025, 10, 20), D(2025, 11, 9)),), symbols=syms)
    conn.execute(AUDIT)
    load(conn, agg_start, data)
    # Logs go to files: a runner blocked on a full pipe that nobody reads yet
    # holds its task, and the runner being read waits for that task.
    logs = [tmp_path / f"runner{i}.log" for i in range(4)]
    procs = []
    for path in logs:
        with path.open("w") as out:
            procs.append(
                subprocess.Popen(
                    h.tickagg_cmd(
                        dsn, "run", "--until-idle", "--workers", "2", "--max-windows", "500"
                    ),
                    cwd=h.ROOT,
                    env=h.cli_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    for p, path in zip(procs, logs, strict=True):
        p.wait(timeout=300)
        assert p.returncode == 0, path.read_text()[-3000:]
    states = conn.execute(
        "SELECT status, count(*) AS n FROM tickagg.data_agg_state GROUP BY 1"
    ).fetchall()
    # 5 symbols: 7 rollup tasks, 2 gap-scan tasks and 7 indicators tasks each
    assert {r["status"]: r["n"] for r in states} == {"idle": 80}
    assert h.pending_invalidations(conn) == 0
    assert_matches(conn, agg_start, data)

    intervals = claim_intervals(conn)
    assert sum(len(v) for v in intervals.values()) >= 35
    for key, spans in intervals.items():
        for (_, _, end), (tok, start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, (
                f"{key}: claim {tok} started at {start} before the previous ended at {end}"
            )
    # nobody lost a lease or overwrote another's claim: every claim ended in the same
    # token's finish, and the cursor never moved backwards
    rows = conn.execute("SELECT * FROM public.claim_log WHERE old_status = 'running'").fetchall()
    assert all(r["new_status"] != "running" for r in rows)
    assert all(
        r["new_cursor"] >= r["old_cursor"] for r in conn.execute("SELECT * FROM public.claim_log")
    )
    # no two processes claimed the same task: more than one process did work
    assert len({r["new_token"] for r in conn.execute("SELECT new_token FROM public.claim_log")}) > 1


def test_source_advancing_while_dependent_runs_wakes_it(dsn, conn):
    """Deterministic interleaving of two runners: 1w is running (its catchup read
    the old 1d cursor) when 1d finishes a quiet run, writing no bar but moving its
    cursor past the end of the week. The 1w task must be due again at once, else
    the closed week waits for run_interval (and `run --until-idle` exits with it
    unmaterialised, as in the four-runner test)."""
    agg_start, data = build(77, ranges=((D(2025, 10, 27), D(2025, 11, 2)),), symbols=(
        ("W1", "crypto_24x7", 100.0, True, True, "polygon_historical"),
    ))  # fmt: skip
    load(conn, agg_start, data)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false"
        " WHERE timeframe = '1w' OR task_kind = 'indicators'"
    )
    h.drive(dsn)
    # 1d has materialised every day; rewind its cursor to the last day (identical
    # content, so its next run writes nothing and only moves the cursor)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = true, next_run_at = now(),"
        " last_agg_bar_ts_utc = CASE timeframe WHEN '1d' THEN '2025-11-02 00:00+00'::timestamptz"
        "  ELSE last_agg_bar_ts_utc END"
        " WHERE timeframe IN ('1d', '1w') AND task_kind = 'rollup'"
    )
    tasks = {
        t["timeframe"]: t
        for t in conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 10, 60)"
        ).fetchall()
    }
    assert set(tasks) == {"1d", "1w"}
    with h.connect(dsn) as other:
        with conn.transaction():  # runner A: 1w catchup sees 1d's old cursor: week not closed
            res_w = conn.execute(
                "SELECT tickagg.catchup_aggregation_range('W1', '1w', %s) AS r",
                (tasks["1w"]["cursor_ts"],),
            ).fetchone()["r"]
            with other.transaction():  # runner B: 1d moves its cursor past the week's end
                res_d = other.execute(
                    "SELECT tickagg.catchup_aggregation_range('W1', '1d', %s) AS r",
                    (tasks["1d"]["cursor_ts"],),
                ).fetchone()["r"]
                h._finish(other, tasks["1d"], res_d)
            assert res_d["bars_written"] == 0 and res_d["cursor_to"] > "2025-11-03", res_d
            h._finish(conn, tasks["1w"], res_w)
    assert res_w["bars_written"] == 0
    due = conn.execute("SELECT * FROM tickagg.agg_get_due_tasks('prod', now())").fetchall()
    wait = conn.execute(
        "SELECT next_run_at - now() AS w FROM tickagg.data_agg_state WHERE timeframe = '1w'"
    ).fetchone()["w"]
    assert [t["timeframe"] for t in due] == ["1w"], (
        f"1w not due although its source's cursor advanced during its run; due in {wait}"
    )
