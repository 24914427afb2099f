"""Migrate is idempotent, safe to run concurrently, and reports drift."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import helpers as h
import psycopg
import pytest
from psycopg import sql
from yoyo import read_migrations

from runner.migrate import migrate, rollback
from runner.paths import REPO_DB_DIR


def _ledger(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        if c.execute("SELECT to_regclass('tickagg.schema_files')").fetchone()[0] is None:
            return []
        return c.execute("SELECT * FROM tickagg.schema_files ORDER BY path").fetchall()


def test_migrate_twice_is_a_catalog_noop(dsn, schema_dump):
    # The per-test database is a copy of a template migrated once.
    once, ledger_once = schema_dump(dsn), _ledger(dsn)
    result = migrate(dsn)
    assert result["migrations_applied"] == []
    assert result["drift"] == []
    assert schema_dump(dsn) == once
    assert _ledger(dsn) == ledger_once  # applied_at only moves when content changes


def test_concurrent_migrates_serialise(empty_dsn, dsn, schema_dump):
    # spawn: a forked child would inherit pytest's state and psycopg internals.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        results = list(pool.map(migrate, [empty_dsn, empty_dsn]))
    applied = sorted((r["migrations_applied"] for r in results), key=len)
    # One process applied everything; the other waited on the lock and found nothing pending.
    assert applied[0] == []
    assert applied[1] == [m.id for m in read_migrations(str(REPO_DB_DIR / "migrations"))]
    assert all(r["drift"] == [] for r in results)
    assert schema_dump(empty_dsn) == schema_dump(dsn)


def test_dry_run_and_drift(dsn, conn, tmp_path, monkeypatch):
    clean = migrate(dsn, dry_run=True)
    assert clean["migrations_pending"] == []
    assert clean["drift"] == []

    functions = sorted((REPO_DB_DIR / "functions").glob("*.sql"))
    if not functions:
        pytest.skip("no function files yet")
    copy = tmp_path / "db"
    shutil.copytree(REPO_DB_DIR, copy)
    edited = Path("functions") / functions[0].name
    with (copy / edited).open("a") as f:
        f.write("\n-- edited by test_dry_run_and_drift\n")
    monkeypatch.setenv("TICKAGG_DB_DIR", str(copy))

    report = migrate(dsn, dry_run=True)
    assert report["migrations_pending"] == []
    assert {"path": edited.as_posix(), "kind": "changed"} in report["drift"]
    assert report["files_applied"] == 0

    # Applying the edited tree clears the drift.
    assert migrate(dsn)["drift"] == []
    assert migrate(dsn, dry_run=True)["drift"] == []


def test_drift_detects_function_changed_in_database(dsn, conn):
    has_md5 = conn.execute(
        """
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('tickagg.schema_files') AND attname = 'definition_md5'
        """
    ).fetchone()
    if not has_md5:
        pytest.skip("ledger has no definition_md5 column")
    row = conn.execute(
        """
        SELECT p.oid::regprocedure::text AS sig, p.proname
        FROM pg_proc p JOIN tickagg.schema_files f ON f.path = 'functions/' || p.proname || '.sql'
        WHERE p.pronamespace = 'tickagg'::regnamespace AND p.prokind = 'f'
        ORDER BY p.proname LIMIT 1
        """
    ).fetchone()
    if row is None:
        pytest.skip("no function recorded in the ledger yet")
    # A hand edit in production: same body, different cost. ALTER keeps everything else.
    # The signature comes from the catalog (regprocedure text is already quoted).
    conn.execute(sql.SQL("ALTER FUNCTION {} COST 4242").format(sql.SQL(row["sig"])))
    report = migrate(dsn, dry_run=True)
    assert {"path": f"functions/{row['proname']}.sql", "kind": "definition_changed"} in report[
        "drift"
    ]
    migrate(dsn)
    assert migrate(dsn, dry_run=True)["drift"] == []


CODE_LAYER_SQL = """
SELECT 'function ' || p.oid::regprocedure::text AS object
FROM pg_proc AS p
WHERE p.pronamespace = 'tickagg'::regnamespace
  AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'view ' || c.relname FROM pg_class AS c
WHERE c.relnamespace = 'tickagg'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'trigger ' || t.tgname FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'tickagg'::regnamespace AND NOT t.tgisinternal
"""


def test_each_rollback_leaves_no_code_to_fail_and_migrate_rolls_forward(dsn, conn):
    """Roll back every migration in turn, the newest first: after each, none of the
    newer code's functions, views or triggers is left to fail (or write wrongly)
    against the older tables (calendar_sessions failed after 0009's rollback; issue
    18 item 4). migrate then rolls forward again, and the rollups equal the oracle."""
    from test_oracle import assert_matches, build, load

    ids = [m.id for m in read_migrations(str(REPO_DB_DIR / "migrations"))]
    for migration_id in reversed(ids[1:]):  # 0001 is the base: no rollback
        assert rollback(dsn, 1) == [migration_id]
        left = [r["object"] for r in conn.execute(CODE_LAYER_SQL).fetchall()]
        assert left == [], f"after rolling back {migration_id}: {left[:5]}"
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT tickagg.calendar_sessions('forex_24x5', now(), now())")
    assert migrate(dsn, dry_run=True)["migrations_pending"] == ids[1:]

    result = migrate(dsn)
    assert result["migrations_applied"] == ids[1:] and result["drift"] == []
    agg_start, data = build(
        11,
        ranges=((dt.date(2025, 3, 6), dt.date(2025, 3, 11)),),
        symbols=(("FXA", "forex_24x5", 1.0859375, True, True, "polygon_historical"),),
    )
    load(conn, agg_start, data)
    assert h.drive(dsn)["bars_written"] > 0
    assert_matches(conn, agg_start, data)


def test_migrate_drops_code_that_no_file_defines_any_more(dsn, conn):
    """A function file removed (or a signature changed) since the last migrate: the
    old function, a view and a trigger of the old code would keep running against
    newer tables; migrate drops them and leaves every current object in place."""
    conn.execute(
        """
        CREATE FUNCTION tickagg.removed_helper() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1';
        CREATE FUNCTION tickagg.setting(p_key text, p_old_extra int) RETURNS text
            LANGUAGE sql STABLE AS 'SELECT NULL::text';
        CREATE VIEW tickagg.removed_view AS SELECT tickagg.removed_helper() AS one;
        CREATE FUNCTION tickagg.removed_trigger_fn() RETURNS trigger LANGUAGE plpgsql
            AS 'BEGIN RETURN NULL; END';
        CREATE TRIGGER removed_trigger AFTER INSERT ON tickagg.data_bars
            FOR EACH STATEMENT EXECUTE FUNCTION tickagg.removed_trigger_fn();
        """
    )
    current = conn.execute(CODE_LAYER_SQL).fetchall()

    assert migrate(dsn)["drift"] == []

    left = {r["object"] for r in conn.execute(CODE_LAYER_SQL).fetchall()}
    assert left == {r["object"] for r in current} - {
        "function tickagg.removed_helper()",
        "function tickagg.setting(text,integer)",
        "function tickagg.removed_trigger_fn()",
        "view removed_view",
        "trigger removed_trigger",
    }
    assert "function tickagg.setting(text)" in left
