"""Static check of every PL/pgSQL function in schema tickagg with plpgsql_check."""

from __future__ import annotations

import os

import pytest

CHECK = """
SELECT level, message, lineno, statement, sqlstate, hint
FROM plpgsql_check_function_tb(
    %(oid)s::regprocedure,
    relid => %(relid)s::regclass,
    oldtable => %(oldtable)s,
    newtable => %(newtable)s,
    fatal_errors => false,
    other_warnings => true,
    extra_warnings => false,
    performance_warnings => false,
    security_warnings => false
)
"""

FUNCTIONS = """
SELECT p.oid,
       p.oid::regprocedure::text AS signature,
       p.prorettype = 'trigger'::regtype AS is_trigger,
       p.prorettype = 'event_trigger'::regtype AS is_event_trigger,
       -- a trigger function is checked against a table it is attached to,
       -- with that trigger's transition table names (REFERENCING NEW TABLE AS ...)
       t.tgrelid AS relid, t.tgoldtable AS oldtable, t.tgnewtable AS newtable
FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
LEFT JOIN LATERAL (
    SELECT tg.tgrelid, tg.tgoldtable, tg.tgnewtable
    FROM pg_trigger tg WHERE tg.tgfoid = p.oid ORDER BY tg.oid LIMIT 1
) t ON true
WHERE p.pronamespace = 'tickagg'::regnamespace AND l.lanname = 'plpgsql'
ORDER BY 2
"""


def test_plpgsql_functions_have_no_errors(conn):
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'"
    ).fetchone()
    if not available:
        msg = "plpgsql_check not installed (scripts/bootstrap.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")

    errors, skipped = [], []
    for fn in conn.execute(FUNCTIONS).fetchall():
        if fn["is_event_trigger"] or (fn["is_trigger"] and fn["relid"] is None):
            skipped.append(fn["signature"])
            continue
        params = {**fn, "relid": fn["relid"] or 0}
        for r in conn.execute(CHECK, params).fetchall():
            line = f"{fn['signature']}:{r['lineno']}: {r['level']}: {r['message']}"
            if r["hint"]:
                line += f" (hint: {r['hint']})"
            print(line)
            if r["level"] == "error":
                errors.append(line)
    if skipped:
        print("not checked (trigger function without a trigger):", ", ".join(skipped))
    assert not errors, "plpgsql_check errors:\n" + "\n".join(errors)
