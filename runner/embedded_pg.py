"""A private PostgreSQL cluster built from the installed server binaries.

Used by `tickagg demo`, the tests and the benchmarks. initdb and the postmaster
refuse to run as root, so as root every server command runs as the `postgres`
system user (runuser) in a data directory that user owns. Authentication is
`trust`, the server listens on 127.0.0.1 only and keeps its socket in the data
directory: this is a throwaway cluster, not a deployment.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

SUPERUSER = "postgres"
OS_USER = "postgres"
# Tuned for tests/demos on a laptop or CI box: durability off, generous limits.
SETTINGS = {
    "shared_buffers": "256MB",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_locks_per_transaction": "256",  # day partitions: many relations per statement
    "log_min_messages": "warning",
    "timezone": "UTC",
}


def find_bindir() -> Path:
    """Newest /usr/lib/postgresql/<major>/bin, else pg_config --bindir, else PATH."""
    override = os.environ.get("TICKAGG_PG_BINDIR")
    if override:
        return Path(override)
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if candidates:
        return max(candidates, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL server binaries not found; run scripts/bootstrap.sh or set TICKAGG_PG_BINDIR"
    )


def library_installed(name: str) -> bool:
    """Whether the server binaries' library directory has the shared library `name`
    (an extension such as timescaledb built or packaged for that server)."""
    out = subprocess.run(
        [str(find_bindir() / "pg_config"), "--pkglibdir"], capture_output=True, text=True
    )
    return out.returncode == 0 and (Path(out.stdout.strip()) / f"{name}.so").exists()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    def __init__(
        self, data_dir: Path, port: int | None = None, settings: Mapping[str, str] | None = None
    ):
        """settings: server options of this start on top of SETTINGS (e.g. a
        shared_preload_libraries that only this cluster gets)."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.settings = dict(settings or {})
        self.bindir = find_bindir()
        self.log_file = self.data_dir / "server.log"

    # -- process control -------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if _is_root():
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        # cwd in the data dir: the postgres user may not be allowed into ours (/root).
        cwd = self.data_dir if self.data_dir.is_dir() else "/"
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        if check and proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {output}{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines)

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if _is_root():
            shutil.chown(self.data_dir, OS_USER, OS_USER)
            # A data dir under a root-only 0700 parent (e.g. pytest's tmp) is unreachable.
            probe = subprocess.run(
                ["runuser", "-u", OS_USER, "--", "test", "-w", str(self.data_dir)]
            )
            if probe.returncode != 0:
                raise PermissionError(
                    f"user {OS_USER!r} cannot write {self.data_dir}; "
                    "use a directory whose parents it can traverse (e.g. under /tmp)"
                )
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tickagg embedded cluster\n")
            conf.writelines(f"{k} = '{v}'\n" for k, v in SETTINGS.items())

    def _running_port(self) -> int | None:
        """Port of a postmaster already serving this data dir (e.g. from an earlier demo)."""
        if self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode != 0:
            return None
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])  # line 4 of postmaster.pid is the port

    def start(self) -> EmbeddedPostgres:
        self._prepare_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:
            self.port = running
            return self
        self.port = self.port or free_port()
        opts = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(self.data_dir))}",
                *(f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items()),
            ]
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
            "-l", str(self.log_file), "-o", opts,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self._running_port() is not None:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart -m fast|immediate (the chaos suite's outage), same options."""
        self._run("pg_ctl", "restart", "-w", "-t", "60", "-m", mode, "-D", str(self.data_dir),
                  "-l", str(self.log_file))  # fmt: skip

    def reload(self) -> None:
        """Re-read postgresql.conf and pg_hba.conf."""
        self._run("pg_ctl", "reload", "-D", str(self.data_dir))

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections -----------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        if self.port is None:
            raise RuntimeError("cluster not started")
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, dbname=dbname)

    def ensure_database(self, name: str) -> str:
        """Create database `name` if missing; return its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except errors.DuplicateDatabase:
                    pass  # another process won the race; fine
        return self.dsn(name)

    def bin(self, name: str) -> Path:
        """Path of a server-side binary such as pg_dump, matching the server version."""
        return self.bindir / name
