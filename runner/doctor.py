"""`tickagg doctor`: read-only checks of a tickagg database, each OK / WARN / FAIL
with a one-line fix. Runs as the admin role (it reads catalogs and pg_stat).

Checks
  search_path    every SECURITY DEFINER function pins search_path=pg_catalog, tickagg, pg_temp
  public_execute PUBLIC cannot execute any tickagg function
  runner_execute tickagg_runner can execute every tickagg function but the
                 maintenance ones db/post/999_grants.sql revokes from it
  migrations     no yoyo migration pending
  drift          db/ functions, views and post files match what migrate applied
  stuck_leases   no task is `running` with a lease expired more than 5 minutes ago
  bloat          data_agg_state dead rows / live rows <= 0.5 (above 50 dead rows)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from psycopg.rows import tuple_row

from . import queries
from .errors import TickaggError, wrap_exceptions
from .migrate import SCHEMA

OK, WARN, FAIL = "OK", "WARN", "FAIL"
PINNED_SEARCH_PATH = "search_path=pg_catalog, tickagg, pg_temp"
RUNNER_ROLE = "tickagg_runner"
# revoked from the runner role on purpose in db/post/999_grants.sql
RUNNER_DENIED = ("ticks_ensure_partitions", "agg_task_set_cursor")
STUCK_LEASE_GRACE = "5 minutes"
BLOAT_RATIO = 0.5
BLOAT_MIN_DEAD = 50  # autovacuum's own base threshold: below it a ratio means little
SHOW = 5  # names listed per finding


@dataclass
class Check:
    name: str
    level: str
    detail: str
    fix: str = ""


def _names(items: list[str]) -> str:
    more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def check_search_path(conn) -> Check:
    bad = queries.doctor_unpinned_definers(conn, SCHEMA, PINNED_SEARCH_PATH)
    if not bad:
        return Check("search_path", OK, "every SECURITY DEFINER function pins its search_path")
    return Check(
        "search_path",
        FAIL,
        f"SECURITY DEFINER without {PINNED_SEARCH_PATH}: {_names(bad)}",
        f"ALTER FUNCTION {bad[0]} SET search_path = pg_catalog, tickagg, pg_temp; "
        "(or fix the file in db/functions and run tickagg migrate)",
    )


def check_public_execute(conn) -> Check:
    bad = queries.doctor_public_execute(conn, SCHEMA)
    if not bad:
        return Check("public_execute", OK, "PUBLIC cannot execute tickagg functions")
    return Check(
        "public_execute",
        FAIL,
        f"PUBLIC can execute: {_names(bad)}",
        f"REVOKE EXECUTE ON FUNCTION {bad[0]} FROM PUBLIC; "
        "(tickagg migrate re-applies db/post/999_grants.sql for all of them)",
    )


def check_runner_execute(conn) -> Check:
    if not queries.doctor_role_exists(conn, RUNNER_ROLE):
        return Check(
            "runner_execute",
            FAIL,
            f"role {RUNNER_ROLE} does not exist",
            f"CREATE ROLE {RUNNER_ROLE} NOLOGIN; then tickagg migrate (grants)",
        )
    bad = queries.doctor_runner_missing_execute(conn, SCHEMA, RUNNER_ROLE, RUNNER_DENIED)
    if not bad:
        return Check("runner_execute", OK, f"{RUNNER_ROLE} can execute every tickagg function")
    return Check(
        "runner_execute",
        FAIL,
        f"{RUNNER_ROLE} cannot execute: {_names(bad)}",
        # one function at a time: ALL FUNCTIONS would also hand it the maintenance
        # functions 999_grants.sql keeps from it
        f"GRANT EXECUTE ON FUNCTION {bad[0]} TO {RUNNER_ROLE}; "
        "(tickagg migrate re-applies db/post/999_grants.sql for all of them)",
    )


def check_migrations(conn) -> list[Check]:
    from .migrate import drift, pending_migrations

    saved = conn.row_factory
    conn.row_factory = tuple_row  # runner.migrate reads rows by position
    try:
        with wrap_exceptions():
            pending = pending_migrations(conn)
            drifted = drift(conn)
    finally:
        conn.row_factory = saved
    out = []
    if pending:
        out.append(
            Check(
                "migrations",
                FAIL,
                f"pending: {_names(pending)}",
                "tickagg migrate --dry-run to review, then tickagg migrate",
            )
        )
    else:
        out.append(Check("migrations", OK, "no migration pending"))
    if drifted:
        out.append(
            Check(
                "drift",
                FAIL,
                "differs from db/: " + _names([f"{d['path']} {d['kind']}" for d in drifted]),
                "tickagg migrate (re-applies every function, view and post file)",
            )
        )
    else:
        out.append(Check("drift", OK, "functions, views and grants match db/"))
    return out


def check_stuck_leases(conn) -> Check:
    rows = queries.doctor_stuck_leases(conn, STUCK_LEASE_GRACE)
    if not rows:
        return Check("stuck_leases", OK, f"no lease expired more than {STUCK_LEASE_GRACE} ago")
    first = rows[0]
    names = [f"{r['canonical_symbol']} {r['timeframe']} {r['task_kind']}" for r in rows]
    return Check(
        "stuck_leases",
        WARN,
        f"{len(rows)} running task(s) with a lease expired over {STUCK_LEASE_GRACE} ago "
        f"(no runner is reclaiming them): {_names(names)}",
        "start a runner (it reclaims expired leases), or "
        f"tickagg tasks reset {first['canonical_symbol']} --timeframe {first['timeframe']} "
        f"--kind {first['task_kind']}",
    )


def check_bloat(conn) -> Check:
    row = queries.doctor_table_bloat(conn, SCHEMA, "data_agg_state")
    if row is None:
        return Check("bloat", WARN, "no statistics for tickagg.data_agg_state", "ANALYZE")
    live, dead = int(row["n_live_tup"] or 0), int(row["n_dead_tup"] or 0)
    ratio = dead / max(live, 1)
    detail = f"data_agg_state: {dead} dead / {live} live rows"
    if dead > BLOAT_MIN_DEAD and ratio > BLOAT_RATIO:
        return Check(
            "bloat",
            WARN,
            f"{detail} (ratio {ratio:.2f} > {BLOAT_RATIO})",
            "VACUUM tickagg.data_agg_state; (and check autovacuum keeps up)",
        )
    return Check("bloat", OK, detail)


def run_checks(conn) -> list[Check]:
    checks = [check_search_path(conn), check_public_execute(conn), check_runner_execute(conn)]
    try:
        checks.extend(check_migrations(conn))
    except TickaggError as exc:
        checks.append(Check("migrations", FAIL, f"cannot read: {exc}", "tickagg migrate"))
    checks.append(check_stuck_leases(conn))
    checks.append(check_bloat(conn))
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.level:<4}  {c.name}: {c.detail}")
        if c.level != OK and c.fix:
            lines.append(f"      fix: {c.fix}")
    failed = sum(c.level == FAIL for c in checks)
    warned = sum(c.level == WARN for c in checks)
    lines.append(f"{len(checks)} checks: {failed} FAIL, {warned} WARN")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)


def failed(checks: list[Check]) -> bool:
    return any(c.level == FAIL for c in checks)
