"""Schema migration: yoyo for db/migrations, then always re-apply functions, views, post.

Why two mechanisms: yoyo applies each migration exactly once, which is right for
tables and data fixes; functions and views are sources of truth that are cheap to
re-create with CREATE OR REPLACE, so every migrate applies all of them in one
transaction and records each file's sha256 in tickagg.schema_files for drift checks.

Rollback: a migration `NNNN_name.sql` may have a sibling `NNNN_name.rollback.sql`
(yoyo's convention); `rollback(dsn, n)` runs those for the last n applied migrations,
then removes every function, view and trigger of the code layer: they are the newer
release's, written against tables the rollback took back, where some would fail and
some write wrongly. The release that matches the remaining migrations re-creates its
own with its `migrate` (as does this one's, rolling forward again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from runner import db
from runner import timescaledb as timescale
from runner.paths import db_dir as default_db_dir

SCHEMA = "tickagg"
# Fixed key for pg_advisory_lock: the ASCII bytes of "tickagg". Any migrator
# (this module, a second process, another host) takes the same lock.
LOCK_KEY = 0x7469636B616767
# Functions first: views may call functions; post (grants) needs both to exist.
FILE_DIRS = ("functions", "views", "post")
# CREATE OR REPLACE VIEW needs an ACCESS EXCLUSIVE lock; waiting forever behind a
# long dashboard query would block every new reader of the view behind us.
LOCK_TIMEOUT = "30s"
YOYO_MIGRATION_TABLE = "_yoyo_migration"
# undefined_table, undefined_function, undefined_object: a dependency not created yet.
UNDEFINED_SQLSTATES = {"42P01", "42883", "42704"}


def _yoyo_uri(dsn: str) -> str:
    """Turn any libpq DSN into a yoyo psycopg3 URI; yoyo passes query args to psycopg.connect.

    Every connection parameter goes into the query string so unix-socket hosts and
    passwords with special characters survive; `schema` makes yoyo keep its
    bookkeeping tables in our schema.
    """
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["options"] = db.session_options(dsn, schema_ddl=True)
    dbname = str(params.pop("dbname", ""))
    params["schema"] = SCHEMA
    return f"postgresql+psycopg:///{quote(dbname)}?{urlencode(params)}"


def _sql_files(root: Path) -> list[Path]:
    return [p for d in FILE_DIRS for p in sorted((root / d).glob("*.sql"))]


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, options=db.session_options(dsn, schema_ddl=True))


def _lock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))


def _unlock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _ledger_columns(conn: psycopg.Connection) -> set[str] | None:
    """Columns of tickagg.schema_files, or None when the table does not exist (yet)."""
    rows = conn.execute(
        """
        SELECT a.attname
        FROM pg_attribute a
        WHERE a.attrelid = to_regclass('tickagg.schema_files')
          AND a.attnum > 0 AND NOT a.attisdropped
        """
    ).fetchall()
    return {r[0] for r in rows} or None


def _function_md5s(conn: psycopg.Connection) -> dict[str, str]:
    """{name: md5 over the definitions of every function/procedure tickagg.<name>
    (all overloads)}, in one query (a query per function file was most of `status`).

    pg_get_functiondef qualifies type names by the search_path in force, so it runs
    under a fixed one: migrate and status must hash the same text."""
    saved = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
    conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
    try:
        rows = conn.execute(
            """
            SELECT p.proname::text,
                   md5(string_agg(pg_get_functiondef(p.oid), E'\\n'
                                  ORDER BY p.oid::regprocedure::text))
            FROM pg_proc p
            WHERE p.pronamespace = to_regnamespace(%s)
              AND p.prokind IN ('f', 'p')
            GROUP BY p.proname
            """,
            (SCHEMA,),
        ).fetchall()
    finally:
        conn.execute("SELECT set_config('search_path', %s, false)", (saved,))
    return {r[0]: r[1] for r in rows}


def _applied_hashes(conn: psycopg.Connection) -> set[str]:
    """yoyo's applied migration hashes, read-only (empty when yoyo never ran here)."""
    table = conn.execute(
        "SELECT to_regclass(%s)", (f"{SCHEMA}.{YOYO_MIGRATION_TABLE}",)
    ).fetchone()[0]
    if table is None:
        return set()
    rows = conn.execute(
        sql.SQL("SELECT migration_hash FROM {}.{}").format(
            sql.Identifier(SCHEMA), sql.Identifier(YOYO_MIGRATION_TABLE)
        )
    ).fetchall()
    return {r[0] for r in rows}


def pending_migrations(conn: psycopg.Connection, root: Path | None = None) -> list[str]:
    """Ids of yoyo migrations not yet applied, without creating anything."""
    root = root or default_db_dir()
    applied = _applied_hashes(conn)
    return [m.id for m in read_migrations(str(root / "migrations")) if m.hash not in applied]


def _yoyo_backend(dsn: str):
    backend = get_backend(_yoyo_uri(dsn))
    # Callers hold our advisory lock, so a row in yoyo's own lock table can only be
    # left over from a crashed run; clearing it avoids a 10 s wait and a manual break-lock.
    backend.break_lock()
    return backend


def _apply_yoyo(dsn: str, root: Path) -> list[str]:
    backend = _yoyo_backend(dsn)
    try:
        migrations = read_migrations(str(root / "migrations"))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def _apply_files(conn: psycopg.Connection, root: Path) -> int:
    """Apply every function/view/post file in one transaction and update the ledger."""
    files = _sql_files(root)
    with conn.transaction():
        # SET LOCAL: unqualified CREATEs land in tickagg and the session is left untouched.
        conn.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(SCHEMA)))
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        # Like pg_dump: SQL-function bodies may call functions from later files.
        conn.execute("SET LOCAL check_function_bodies = off")
        # post/ (triggers, grants) comes after the stale code is gone: its grants
        # rewrite every function's catalog row, which would hide what is stale.
        post = [p for p in files if p.parent == root / "post"]
        before = conn.execute(CODE_LAYER_VERSIONS_SQL).fetchall()
        _apply_in_dependency_order(conn, root, [p for p in files if p not in post])
        _drop_code_not_in_files(conn, before)
        _apply_in_dependency_order(conn, root, post)
        cols = _ledger_columns(conn)
        if cols is not None:
            _record_ledger(conn, root, files, with_md5="definition_md5" in cols)
    return len(files)


# Every function and view of the code layer with the catalog row version that
# defines it: CREATE OR REPLACE rewrites that row even when nothing changed, so a
# version that survives applying every file belongs to no file any more.
CODE_LAYER_VERSIONS_SQL = """
SELECT 'routine' AS kind, p.oid::regprocedure::text AS object, p.xmin::text AS version
FROM pg_catalog.pg_proc AS p
WHERE
    p.pronamespace = 'tickagg'::regnamespace
    AND NOT EXISTS (
        SELECT FROM pg_catalog.pg_depend AS d
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    )
UNION ALL
SELECT 'view', c.oid::regclass::text, r.xmin::text
FROM pg_catalog.pg_class AS c
INNER JOIN pg_catalog.pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
WHERE c.relnamespace = 'tickagg'::regnamespace AND c.relkind = 'v'
"""


def _drop_code_not_in_files(conn: psycopg.Connection, before: list[tuple]) -> None:
    """Drop the functions and views that no file defines any more (a file removed
    or a signature changed since the last migrate), and the triggers calling such
    a function: left behind, they run old code against newer tables. No CASCADE:
    an object of someone else's that depends on them stops the migrate instead."""
    after = set(conn.execute(CODE_LAYER_VERSIONS_SQL).fetchall())
    stale = [(kind, name) for kind, name, version in before if (kind, name, version) in after]
    views = [name for kind, name in stale if kind == "view"]
    routines = [name for kind, name in stale if kind == "routine"]
    if views:
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.SQL(", ").join(map(sql.SQL, views))))
    if routines:
        triggers = conn.execute(
            """
            SELECT t.tgname, t.tgrelid::regclass::text AS relation
            FROM pg_catalog.pg_trigger AS t
            WHERE NOT t.tgisinternal AND t.tgfoid::regprocedure::text = ANY(%s)
            """,
            (routines,),
        ).fetchall()
        for name, relation in triggers:
            conn.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.SQL(relation))
            )
        conn.execute(sql.SQL("DROP ROUTINE {}").format(sql.SQL(", ").join(map(sql.SQL, routines))))


def _apply_in_dependency_order(conn: psycopg.Connection, root: Path, files: list[Path]) -> None:
    """Apply files in sorted order, retrying those that reference objects of later files.

    Sorted order is deterministic but knows nothing about dependencies (a view on a
    view that sorts after it, a grant on a view that failed). Each file runs in a
    savepoint; files failing with "undefined object" are retried in further passes
    until a pass makes no progress, then the first such error is raised.
    """
    pending = files
    while pending:
        deferred: list[tuple[Path, psycopg.Error]] = []
        for path in pending:
            try:
                with conn.transaction():  # a savepoint inside the outer transaction
                    # No parameters: psycopg sends the file as one simple query, so
                    # multi-statement files and '%' in bodies are fine.
                    conn.execute(path.read_text())
            except psycopg.Error as exc:
                exc.add_note(f"while applying {_rel(root, path)}")
                if exc.sqlstate not in UNDEFINED_SQLSTATES:
                    raise
                deferred.append((path, exc))
        if len(deferred) == len(pending):
            raise deferred[0][1]
        pending = [path for path, _ in deferred]


def _record_ledger(
    conn: psycopg.Connection, root: Path, files: list[Path], *, with_md5: bool
) -> None:
    cols = ["path", "sha256", "applied_at"] + (["definition_md5"] if with_md5 else [])
    # applied_at only moves when content changes, so it answers "since when is this live".
    upsert = sql.SQL(
        """
        INSERT INTO tickagg.schema_files AS f ({cols})
        VALUES ({vals})
        ON CONFLICT (path) DO UPDATE SET {sets}
        WHERE ({old}) IS DISTINCT FROM ({new})
        """
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(
            sql.SQL("now()") if c == "applied_at" else sql.Placeholder() for c in cols
        ),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols[1:]
        ),
        old=sql.SQL(", ").join(
            sql.SQL("f.{}").format(sql.Identifier(c)) for c in cols if c != "applied_at"
        ),
        new=sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in cols if c != "applied_at"
        ),
    )
    md5s = _function_md5s(conn) if with_md5 else {}
    for path in files:
        params: list[Any] = [_rel(root, path), _sha256(path)]
        if with_md5:
            params.append(_md5_for(md5s, root, path))
        conn.execute(upsert, params)
    # Rows for deleted files would show as drift forever; the ledger mirrors what was applied.
    conn.execute(
        "DELETE FROM tickagg.schema_files WHERE NOT (path = ANY(%s))",
        ([_rel(root, p) for p in files],),
    )


def _md5_for(md5s: dict[str, str], root: Path, path: Path) -> str | None:
    return md5s.get(path.stem) if path.parent == root / "functions" else None


def drift(conn: psycopg.Connection, root: Path | None = None) -> list[dict]:
    """Differences between db/ on disk, the ledger and the live function definitions.

    kinds: changed (file sha256 != ledger), not_applied (file not in ledger),
    no_file (ledger row without file), definition_changed (someone altered the
    function in the database after migrate).
    """
    root = root or default_db_dir()
    cols = _ledger_columns(conn)
    on_disk = {_rel(root, p): p for p in _sql_files(root)}
    if cols is None:
        return [{"path": rel, "kind": "not_applied"} for rel in on_disk]
    md5_col = sql.SQL("definition_md5" if "definition_md5" in cols else "NULL::text")
    rows = conn.execute(
        sql.SQL("SELECT path, sha256, {} FROM tickagg.schema_files ORDER BY path").format(md5_col)
    ).fetchall()
    ledger = {r[0]: (r[1], r[2]) for r in rows}
    md5s = _function_md5s(conn)
    out: list[dict] = []
    for rel, path in on_disk.items():
        if rel not in ledger:
            out.append({"path": rel, "kind": "not_applied"})
            continue
        sha, md5 = ledger[rel]
        if sha != _sha256(path):
            out.append({"path": rel, "kind": "changed"})
        if md5 is not None and _md5_for(md5s, root, path) != md5:
            out.append({"path": rel, "kind": "definition_changed"})
    out.extend({"path": rel, "kind": "no_file"} for rel in ledger if rel not in on_disk)
    return out


def migrate(
    dsn: str,
    *,
    dry_run: bool = False,
    db_dir: Path | None = None,
    timescaledb: bool = False,
    compress_after: dt.timedelta | None = None,
) -> dict:
    """Apply pending migrations, then all functions/views/post files; see module docstring.

    timescaledb: afterwards turn data_bars into a hypertable (runner/timescaledb.py);
    checked before anything is applied, so a server without it changes nothing.
    """
    root = Path(db_dir) if db_dir else default_db_dir()
    with _connect(dsn) as conn:
        if timescaledb:
            timescale.check_available(conn)
        if dry_run:
            return {
                "migrations_pending": pending_migrations(conn, root),
                "migrations_applied": [],
                "files_applied": 0,
                "drift": drift(conn, root),
            }
        _lock(conn)
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            applied = _apply_yoyo(dsn, root)
            n_files = _apply_files(conn, root)
            result = {"migrations_applied": applied, "files_applied": n_files}
            if timescaledb:
                result.update(timescale.convert(conn, compress_after))
            result["drift"] = drift(conn, root)
            return result
        finally:
            # A server that ended the session (FATAL) released the lock with it; an
            # unlock there would replace the server's message with "connection closed".
            if not conn.closed:
                _unlock(conn)


# The code layer: the views, the triggers that call tickagg functions, and the
# functions (migrations create none of them; an extension's own are left alone).
# Views first (they may use functions), all in one statement each so that their
# dependencies among themselves do not matter; no CASCADE, so that an object of
# someone else's that depends on them stops the rollback instead of vanishing.
DROP_CODE_LAYER_SQL = """
DO $$
DECLARE
    v_trigger record;
    v_views text;
    v_routines text;
BEGIN
    SELECT string_agg(c.oid::regclass::text, ', ') INTO v_views
    FROM pg_catalog.pg_class AS c
    WHERE c.relnamespace = 'tickagg'::regnamespace AND c.relkind = 'v';
    IF v_views IS NOT NULL THEN
        EXECUTE 'DROP VIEW ' || v_views;
    END IF;
    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS relation
        FROM pg_catalog.pg_trigger AS t
        INNER JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
        WHERE p.pronamespace = 'tickagg'::regnamespace AND NOT t.tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.relation);
    END LOOP;
    SELECT string_agg(p.oid::regprocedure::text, ', ') INTO v_routines
    FROM pg_catalog.pg_proc AS p
    WHERE
        p.pronamespace = 'tickagg'::regnamespace
        AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_depend AS d
            WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        );
    IF v_routines IS NOT NULL THEN
        EXECUTE 'DROP ROUTINE ' || v_routines;
    END IF;
    IF to_regclass('tickagg.schema_files') IS NOT NULL THEN
        DELETE FROM tickagg.schema_files;
    END IF;
END
$$
"""


def _rollback_file(migration_path: str) -> Path:
    path = Path(migration_path)
    return path.with_name(path.stem + ".rollback.sql")


def rollback(dsn: str, count: int, *, db_dir: Path | None = None) -> list[str]:
    """Roll back the last `count` applied migrations using their .rollback.sql siblings,
    then remove the code layer (module docstring)."""
    root = Path(db_dir) if db_dir else default_db_dir()
    with _connect(dsn) as conn:
        _lock(conn)
        try:
            backend = _yoyo_backend(dsn)
            try:
                migrations = read_migrations(str(root / "migrations"))
                with backend.lock():
                    victims = list(backend.to_rollback(migrations))[:count]
                    # yoyo would "roll back" a migration without a rollback file by just
                    # forgetting it; refuse instead of leaving its objects behind.
                    missing = [m.id for m in victims if not _rollback_file(m.path).exists()]
                    if missing:
                        raise ValueError(f"no .rollback.sql for: {', '.join(missing)}")
                    backend.rollback_migrations(victims)
                if victims:
                    conn.execute(DROP_CODE_LAYER_SQL)
                return [m.id for m in victims]
            finally:
                backend.connection.close()
        finally:
            _unlock(conn)
