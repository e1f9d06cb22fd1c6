"""What every engine shares: the errors callers catch, the interface, the migration files."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any, Protocol


class Conflict(Exception):
    """A write broke a uniqueness rule (existing user, file, ...)."""


class Busy(Exception):
    """Another connection held the write lock past the busy timeout; nothing was written.
    The server answers 503 with Retry-After (errors.py)."""


class InvalidText(ValueError):
    """A value this engine cannot store or compare (PostgreSQL: a NUL character in text);
    nothing by that name can exist here, so the server answers as for a missing one."""


def integrity_errors() -> tuple[type[Exception], ...]:
    """The constraint errors of the drivers in use (catch these, never sqlite3.*): sqlite3's,
    and psycopg's once the PostgreSQL engine has imported it. A function, not a constant:
    psycopg is an optional extra costing ~0.1 s to import, so a server on SQLite never loads
    it (an `except` clause evaluates this only when something was raised)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


def database_errors() -> tuple[type[Exception], ...]:
    """Every database error of the drivers in use (see integrity_errors)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


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
