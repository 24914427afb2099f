"""A finish cannot move a cursor past what the task's source has (issue 23 item 11):
as the runner role, a claimed task finished with a cursor in 2090 is refused and
changes nothing; `tickagg tasks reset --cursor` (admin only) repairs a cursor set
wrong; and every function the runner role can execute, called with hostile
arguments (far-future and far-past times, other tasks' tokens, huge ranges), leaves
bars, ticks, partitions, the gap ledger and every cursor as they were, and the bars
built afterwards equal the oracle."""

from __future__ import annotations

import datetime as dt
import json
import random

import psycopg
import pytest
from helpers import cursors, derived, drive, insert_bars, register, run_cli, sync
from oracle import diff, expected_bars, random_bars
from psycopg import sql

START = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)
FAR_FUTURE = dt.datetime(2090, 1, 1, tzinfo=dt.UTC)
FAR_PAST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def materialised(conn, dsn):
    """HX (crypto, bars) with three days of random bars, every task run to idle."""
    bars = random_bars("crypto_24x7", dt.date(2025, 9, 1), dt.date(2025, 9, 3), random.Random(23))
    register(conn, "HX", "crypto_24x7")
    sync(conn, START)
    insert_bars(conn, "HX", bars)
    drive(dsn)
    conn.execute("SELECT tickagg.sync_export_tasks('prod', %s)", (START,))
    return bars


def _drive(conn, dsn) -> None:
    """Run every task to idle as the runner would, but export (no ClickHouse here)."""
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind = 'export'")
    drive(dsn)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = true WHERE task_kind = 'export'")


def _make_all_due(conn) -> None:
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now() - interval '1 second'")


def _claim_as_runner(runner) -> list[dict]:
    return runner.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 1000, 300)"
    ).fetchall()


def _release_all(conn) -> None:
    conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'idle', claim_token = NULL,"
        " lease_expires_at = NULL, running_started_at_utc = NULL"
    )


def test_a_claimed_task_cannot_finish_past_its_frontier(conn, materialised, role_dsn):
    _make_all_due(conn)
    before = cursors(conn)
    with psycopg.connect(role_dsn(), autocommit=True, row_factory=psycopg.rows.dict_row) as r:
        claimed = _claim_as_runner(r)
        kinds = {t["task_kind"] for t in claimed}
        assert {"rollup", "indicators", "gap_scan", "export"} <= kinds, kinds
        for t in claimed:
            key = (t["canonical_symbol"], t["timeframe"], t["task_kind"])
            finish = (
                "SELECT tickagg.agg_finish(%s, %s, %s, %s, 'success', %s, %s, NULL, 0, false) AS r"
            )
            args = (*key, t["claim_token"], t["cursor_ts"], FAR_FUTURE)
            if t["task_kind"] in ("export", "ticks_retention"):
                # their cursor records when a run finished: the database clock sets it
                res = r.execute(finish, args).fetchone()["r"]
                cursor = dt.datetime.fromisoformat(res["cursor"])
                assert cursor < dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), res
                continue
            with pytest.raises(psycopg.Error) as err:
                r.execute(finish, args)
            assert err.value.sqlstate == "TK004", err.value
            assert "past its frontier" in str(err.value)
            assert cursors(conn)[key] == before[key]
            r.execute(
                "SELECT tickagg.agg_finish(%s, %s, %s, %s, 'release')", (*key, t["claim_token"])
            )
    after = cursors(conn)
    assert {k: v for k, v in after.items() if k[2] not in ("export", "ticks_retention")} == {
        k: v for k, v in before.items() if k[2] not in ("export", "ticks_retention")
    }


def test_a_batch_finish_cannot_move_cursors_past_their_frontier(conn, materialised, role_dsn):
    _make_all_due(conn)
    before = cursors(conn)
    with psycopg.connect(role_dsn(), autocommit=True, row_factory=psycopg.rows.dict_row) as r:
        claimed = [t for t in _claim_as_runner(r) if t["task_kind"] in ("rollup", "indicators")]
        for kind in ("rollup", "indicators"):
            tasks = [t for t in claimed if t["task_kind"] == kind and t["timeframe"] == "1h"]
            assert tasks, kind
            with pytest.raises(psycopg.Error) as err:
                r.execute(
                    "SELECT tickagg.agg_finish_batch(%s, '1h', %s, %s, %s, %s, now(), %s::jsonb[])",
                    (
                        kind,
                        [t["canonical_symbol"] for t in tasks],
                        [t["claim_token"] for t in tasks],
                        [t["cursor_ts"] for t in tasks],
                        [t["claim_token"] for t in tasks],
                        [
                            json.dumps({"cursor_to": FAR_FUTURE.isoformat(), "bars_written": 0})
                            for _ in tasks
                        ],
                    ),
                )
            assert err.value.sqlstate == "TK004", err.value
    assert cursors(conn) == before
    _release_all(conn)


def test_tasks_reset_cursor_repairs_a_cursor_and_is_for_admins_only(
    conn, dsn, materialised, role_dsn
):
    key = ("HX", "1h", "rollup")
    good = cursors(conn)[key]
    # what a runner role could do before the frontier check: a cursor in 2090
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = %s"
        " WHERE canonical_symbol = %s AND timeframe = %s AND task_kind = %s",
        (FAR_FUTURE, *key),
    )
    out = run_cli(
        role_dsn(), "tasks", "reset", "HX", "--timeframe", "1h", "--kind", "rollup",
        "--cursor", "2025-09-02T10:30:00Z", timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "permission denied" in out.stderr, out.stderr
    assert cursors(conn)[key] == FAR_FUTURE

    # forward past the source's bars: refused, nothing changes
    out = run_cli(
        dsn, "tasks", "reset", "HX", "--timeframe", "5m", "--kind", "rollup",
        "--cursor", "2089-01-01", timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "past the frontier" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr

    # back into a bucket: the cursor goes to the start of the bucket holding it
    out = run_cli(
        dsn, "tasks", "reset", "HX", "--timeframe", "1h", "--kind", "rollup",
        "--cursor", "2025-09-02T10:30:00Z", timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["tasks_reset"] == 1
    assert cursors(conn)[key] == dt.datetime(2025, 9, 2, 10, tzinfo=dt.UTC)

    _drive(conn, dsn)
    assert cursors(conn)[key] == good
    want = expected_bars("HX", "crypto_24x7", materialised, START)
    assert diff(want, derived(conn, ["HX"])) == []


def _state(conn) -> dict:
    """What no hostile call may change: bars, ticks and their partitions, the gap
    ledger, registry, calendars, settings; and no cursor may move forward."""
    one = lambda q: conn.execute(q).fetchone()["v"]  # noqa: E731
    return {
        "data_bars": one("SELECT md5(string_agg(b::text, '|' ORDER BY b.canonical_symbol,"
                         " b.ts_utc)) AS v FROM tickagg.data_bars AS b"),
        "derived": one("SELECT md5(string_agg((d.canonical_symbol, d.timeframe, d.ts_utc, d.open,"
                       " d.high, d.low, d.close, d.volume, d.deleted_at)::text, '|' ORDER BY"
                       " d.canonical_symbol, d.timeframe, d.ts_utc)) AS v"
                       " FROM tickagg.derived_data_bars AS d"),
        "ticks": one("SELECT count(*) AS v FROM tickagg.ticks"),
        "partitions": one("SELECT count(*) AS v FROM pg_inherits"
                          " WHERE inhparent = 'tickagg.ticks'::regclass"),
        "gaps": one("SELECT md5(string_agg(g::text, '|' ORDER BY g::text)) AS v"
                    " FROM tickagg.gap_ledger AS g"),
        "registry": one("SELECT md5(string_agg(r::text, '|' ORDER BY r.canonical_symbol)) AS v"
                        " FROM tickagg.core_asset_registry_all AS r"),
        "calendars": one("SELECT md5(coalesce(string_agg(h::text, '|' ORDER BY h::text), ''))"
                         " AS v FROM tickagg.market_holidays AS h"),
        "settings": one("SELECT md5(string_agg(s::text, '|' ORDER BY s::text)) AS v"
                        " FROM tickagg.settings AS s"),
    }  # fmt: skip


# Runner-callable functions whose purpose is to change the registry, calendars or
# task switches, documented as the runner role's to call (README: task control,
# calendars): their hostile arguments are tested where they are.
CHANGES_BY_DESIGN = {
    "register_symbol",
    "calendar_set_holiday",
    "agg_task_set_enabled",
    "agg_task_set_delay",
    "agg_task_reset",
    "sync_agg_state_from_registry",
    "sync_export_tasks",
}


def _hostile_value(name: str, typ: str, when: dt.datetime, victim: dict):
    """A hostile argument for a parameter: the victim task's symbol and token (its
    own, or another task's), its real cursor where the fence needs it, and far
    times, huge counts and ranges everywhere else."""
    huge = 2_000_000_000
    if name in ("p_cursor_from", "p_cursors"):
        return victim["cursor"] if name == "p_cursor_from" else [victim["cursor"]]
    if typ in ("text", "text[]") and "symbol" in name:
        return victim["symbol"] if typ == "text" else [victim["symbol"]]
    by_name = {
        "p_timeframe": "1h", "p_task_kind": "rollup", "p_env": "prod", "p_scope": "history",
        "p_outcome": "success", "p_source_kind": "bars", "p_price_kind": "last",
        "p_calendar_code": "crypto_24x7", "p_source_timeframe": "5m",
    }  # fmt: skip
    if name in by_name and typ == "text":
        return by_name[name]
    scalar = {
        "timestamp with time zone": when,
        "uuid": victim["token"],
        "integer": huge,
        "bigint": huge * 1000,
        "boolean": True,
        "interval": "1000 years",
        "double precision": 1e308,
        "date": when.date(),
        "tstzmultirange": f"{{[{FAR_PAST.isoformat()},{FAR_FUTURE.isoformat()})}}",
        "daterange": "[0001-01-01,9999-01-01)",
        "jsonb": json.dumps({"cursor_to": when.isoformat(), "bars_written": huge}),
        "text": "1h",
    }
    if typ.endswith("[]"):
        value = "1h" if typ == "text[]" else scalar.get(typ[:-2])
        return None if value is None else [value]
    return scalar.get(typ)


def _claimed(conn, symbol: str) -> dict:
    """The symbol's 1h rollup task as just claimed by a runner: its token and cursor."""
    row = conn.execute(
        "UPDATE tickagg.data_agg_state SET status = 'running', claim_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '5 minutes', running_started_at_utc = now()"
        " WHERE canonical_symbol = %s AND timeframe = '1h' AND task_kind = 'rollup'"
        " RETURNING claim_token, last_agg_bar_ts_utc",
        (symbol,),
    ).fetchone()
    return {"token": row["claim_token"], "cursor": row["last_agg_bar_ts_utc"]}


def test_every_runner_function_with_hostile_arguments_changes_nothing(
    conn, dsn, materialised, role_dsn
):
    register(conn, "HY", "crypto_24x7")  # a second symbol: the tokens of its tasks
    sync(conn, START)
    _drive(conn, dsn)
    functions = conn.execute(
        "SELECT p.proname AS name, p.oid::regprocedure::text AS signature,"
        " ARRAY(SELECT a.n FROM unnest(p.proargnames, p.proargmodes) WITH ORDINALITY"
        "  AS a (n, m, o) WHERE coalesce(a.m, 'i') IN ('i', 'b') ORDER BY a.o) AS arg_names,"
        " ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t) AS arg_types"
        " FROM pg_proc AS p"
        " WHERE p.pronamespace = 'tickagg'::regnamespace AND p.prorettype <> 'trigger'::regtype"
        "  AND has_function_privilege('tickagg_runner', p.oid, 'EXECUTE')"
        " ORDER BY 1, 2"
    ).fetchall()
    assert len(functions) > 60
    # the partitions ahead that retention makes by the database clock, made already
    conn.execute("SELECT tickagg.ticks_retention_run()")
    before_cursors = cursors(conn)
    before = _state(conn)
    called = 0
    with psycopg.connect(role_dsn(), autocommit=True, row_factory=psycopg.rows.dict_row) as r:
        for f in functions:
            if f["name"] in CHANGES_BY_DESIGN:
                continue
            for when in (FAR_FUTURE, FAR_PAST):
                hy, hx = _claimed(conn, "HY"), _claimed(conn, "HX")
                victims = (
                    {"symbol": "HY", **hy},  # its own claim
                    {"symbol": "HX", "token": hy["token"], "cursor": hx["cursor"]},  # another's
                )
                for victim in victims:
                    args = [
                        _hostile_value(n, t, when, victim)
                        for n, t in zip(f["arg_names"], f["arg_types"], strict=True)
                    ]
                    call = sql.SQL("SELECT tickagg.{}({})").format(
                        sql.Identifier(f["name"]),
                        sql.SQL(", ").join(
                            sql.SQL("%s::{}").format(sql.SQL(t)) for t in f["arg_types"]
                        ),  # (types from the catalog)
                    )
                    called += 1
                    try:
                        r.execute(call, args)
                    except psycopg.Error:
                        pass  # refused: fine; what matters is what changed
                    what = f"{f['signature']} on {victim['symbol']} at {when}"
                    after = _state(conn)
                    assert after == before, f"{what} changed {after} from {before}"
                    moved = {
                        k: (before_cursors[k], v)
                        for k, v in cursors(conn).items()
                        if k in before_cursors and v > before_cursors[k]
                    }
                    assert not moved, f"{what} moved cursors forward: {moved}"
    assert called > 100
    _release_all(conn)
    _drive(conn, dsn)
    want = expected_bars("HX", "crypto_24x7", materialised, START)
    assert diff(want, derived(conn, ["HX"])) == []
