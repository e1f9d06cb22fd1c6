"""Database engines behind one small interface: SQLite (the reference) and PostgreSQL.

The query mixins of teamindex.db speak one SQL that both engines accept (RETURNING, ON
CONFLICT, coalesce, quoted "user"); what still differs (placeholders, error classes, how a
writer takes the lock, how the schema version is kept) lives in the engine modules only.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol


class Conflict(Exception):
    """A write broke a uniqueness rule (existing user, file, ...)."""


class Busy(Exception):
    """Another connection held the write lock past the busy timeout; nothing was written.
    The server answers 503 with Retry-After (errors.py)."""


class InvalidText(ValueError):
    """A value this engine cannot store or compare (PostgreSQL: a NUL character in text);
    nothing by that name can exist here, so the server answers as for a missing one."""


def _driver_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(integrity errors, all database errors) of the drivers installed: psycopg is an
    optional extra, so without it only sqlite3's count."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,), (sqlite3.Error,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError), (sqlite3.Error, psycopg.Error)


# Neutral names for code that catches a driver's errors (catch these, never sqlite3.*).
IntegrityError, DatabaseError = _driver_errors()


class Conn(Protocol):
    """What the query mixins use of a connection (sqlite3.Connection has all of it)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


class Engine(Protocol):
    """One database: a connection per thread, write transactions that serialize writers,
    savepoints, a per-thread lock wait, and migrations."""

    name: str  # "sqlite" or "postgresql"
    busy_timeout_ms: int

    @property
    def conn(self) -> Conn: ...
    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[Conn]: ...
    def savepoint(self) -> AbstractContextManager[None]: ...
    def waiting(self, busy_timeout_ms: int) -> AbstractContextManager[None]: ...
    def migrate(self) -> int: ...
    def schema_version(self) -> int: ...
    # For copying a whole database (transfer.py): the schema, and the ids handed out.
    def table_names(self) -> set[str]: ...
    def column_names(self, table: str) -> list[str]: ...
    def ids_used(self, table: str) -> int: ...
    def reserve_ids(self, table: str, used: int) -> None: ...


def is_postgresql(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_engine(target: Path | str, busy_timeout_ms: int) -> Engine:
    """The engine for a SQLite file (a path) or a postgresql:// URL. Nothing connects
    yet: connections open on first use, so an engine made before a fork is safe."""
    if is_postgresql(target):
        from .postgresql import PostgresEngine

        return PostgresEngine(str(target), busy_timeout_ms=busy_timeout_ms)
    from .sqlite import SqliteEngine

    return SqliteEngine(Path(target), busy_timeout_ms=busy_timeout_ms)


def migration_scripts(package: str = "teamindex.migrations") -> list[tuple[int, str]]:
    """The numbered scripts of one engine's schema history (both share the numbers)."""
    found = []
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    found.sort()
    # A gap would be skipped forever by databases already past it (the version only grows).
    numbers = [number for number, _script in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found
