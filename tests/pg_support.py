"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` binaries, initdb into a
temp dir, the server on a unix socket dir and a free loopback port, started once per session.

Every test gets its own database, copied from a migrated template (CREATE DATABASE ...
TEMPLATE takes a few milliseconds; migrating each one would take far longer).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from teamindex.config import Settings
from teamindex.db import Database

ENV_SWITCH = "TEAMINDEX_TEST_DATABASE"
START_TIMEOUT_S = 60
TEMPLATE = "teamindex_template"


def wanted() -> bool:
    """True when the `settings` fixture should use PostgreSQL (the second pass of dev.py)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() == "postgresql"


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb (Debian's layout)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (entry for entry in root.glob("*/bin") if (entry / "initdb").exists()),
        key=lambda entry: int(entry.parent.name) if entry.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running cluster: `url(name)` connects to database `name` over loopback TCP."""

    root: Path
    bin_dir: Path
    port: int
    as_user: list[str]
    _names: itertools.count[int]
    _lock: threading.Lock

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://teamindex@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement as the cluster's superuser (outside any transaction)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        """A new, migrated, empty database: its postgresql:// URL."""
        with self._lock:
            name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.url(name)

    def empty_database(self) -> str:
        """A new database without teamindex's schema (for migration tests)."""
        with self._lock:
            name = f"e{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(self.root / "db"),
                "-m",
                "immediate",
                "-w",
            ],
            check=False,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb and start a cluster; as root, both run as the `postgres` system user (the
    server refuses to run as root) in a directory it owns."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="teamindex-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    run = {"check": True, "capture_output": True, "timeout": START_TIMEOUT_S}
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(root / "db"),
            "-U",
            "teamindex",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        **run,  # type: ignore[call-overload]
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(root / "db"),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            options,
        ],
        **run,  # type: ignore[call-overload]
    )
    cluster = Cluster(root, bin_dir, port, as_user, itertools.count(), threading.Lock())
    try:
        cluster.admin(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0")
        db = Database(cluster.url(TEMPLATE))
        try:
            db.migrate()
        finally:
            db.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


_running: list[Cluster] = []  # the session's cluster, once started


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's cluster, started on first use and stopped at the end. Without
    PostgreSQL's binaries the tests needing it skip, except in CI (`dev.py test` installs
    them: a missing one is a failure there)."""
    if _bin_dir() is None and os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = start_cluster()
    _running.append(cluster)
    yield cluster
    _running.remove(cluster)
    cluster.stop()


def another_database(settings: Settings) -> str:
    """For a second, separate index in a test: "" (SQLite in its own data dir) when
    `settings` use SQLite, else a fresh database of the session's cluster."""
    if not settings.database_url:
        return ""
    return _running[0].fresh_database()
