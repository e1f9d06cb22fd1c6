"""Connections, transactions and migrations: the base every query mixin builds on.

Readers never wait for the writer (WAL); writers serialize on SQLite's own lock, across the
server and any CLI process. Durability: synchronous=FULL, so a COMMIT that returned is on disk.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


class Conflict(Exception):
    """A write broke a uniqueness rule (existing user, file, ...)."""


def migration_scripts() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("teamindex.migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    found.sort()
    # A gap would be skipped forever by databases already past it (user_version only grows).
    numbers = [number for number, _script in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


class Connections:
    """One SQLite file, a connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use and kept (waitress threads persist)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the write lock up front (no upgrade
        deadlocks), COMMIT on success, ROLLBACK on any exception (a failed COMMIT too).
        SQLITE_FULL is raised as OSError(ENOSPC): a full database is a full disk to callers."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, f"database full: {exc}") from exc
            raise

    def migrate(self) -> int:
        """Apply numbered migrations past PRAGMA user_version; return the schema version.

        Each runs with foreign keys off (SQLite ignores that pragma inside a transaction, so
        it is set before): rebuilding a table (0005) drops the old one, which with foreign
        keys on would cascade-delete every row pointing at it. foreign_key_check then proves
        the result consistent before it commits."""
        conn = self.conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in migration_scripts():
            if number <= current:
                continue
            conn.execute("PRAGMA foreign_keys = OFF")
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};")
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration {number} broke foreign keys: {broken[:5]}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.execute("PRAGMA foreign_keys = ON")
            current = number
        return current

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]
