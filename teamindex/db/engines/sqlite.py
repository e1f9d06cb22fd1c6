"""SQLite, the reference engine: one file, a connection per thread.

Readers never wait for the writer (WAL); writers serialize on SQLite's own lock, across the
server and any CLI process. Durability: synchronous=FULL, so a COMMIT that returned is on disk.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import Busy, migration_scripts


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteEngine:
    """One SQLite file, a connection per thread."""

    name = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
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
        SQLITE_FULL is raised as OSError(ENOSPC): a full database is a full disk to callers;
        a lock held by someone else past the busy timeout is raised as Busy."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise Busy(f"database is locked by another writer: {exc}") from exc
            raise
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, f"database full: {exc}") from exc
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                raise Busy(f"database is locked by another writer: {exc}") from exc
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises (a batch of
        imports keeps the rows of the files before a refused one)."""
        conn = self.conn
        conn.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            raise
        conn.execute("RELEASE item")

    @contextmanager
    def waiting(self, busy_timeout_ms: int) -> Iterator[None]:
        """This thread's statements wait up to `busy_timeout_ms` for another writer."""
        conn = self.conn
        previous = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(previous)}")

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
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def ids_used(self, table: str) -> int:
        """The highest id `table` ever handed out (AUTOINCREMENT remembers deleted ones)."""
        row = self.conn.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0),"  # noqa: S608
            f" coalesce((SELECT max(id) FROM {table}), 0))",
            (table,),
        ).fetchone()
        return int(row[0])

    def reserve_ids(self, table: str, used: int) -> None:
        """New rows of `table` get ids above `used` (only AUTOINCREMENT tables need it:
        the others continue after their highest id anyway)."""
        schema = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if schema is None or "AUTOINCREMENT" not in schema[0].upper() or used <= 0:
            return
        self.conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0"
            " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
            (table, table),
        )
        self.conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (used, table)
        )

    def table_names(self) -> set[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows} - {"sqlite_sequence"}

    def column_names(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")]
