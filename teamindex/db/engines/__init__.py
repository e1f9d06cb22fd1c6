"""Database engines behind one small interface: SQLite (the reference) and PostgreSQL.

The query mixins of teamindex.db speak one SQL that both engines accept (RETURNING, ON
CONFLICT, coalesce, quoted "user"); what still differs (placeholders, error classes, how a
writer takes the lock, how the schema version is kept) lives in the engine modules only.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Busy,
    Conflict,
    Conn,
    Engine,
    InvalidText,
    database_errors,
    integrity_errors,
    migration_scripts,
)

__all__ = [
    "Busy",
    "Conflict",
    "Conn",
    "Engine",
    "InvalidText",
    "database_errors",
    "integrity_errors",
    "is_postgresql",
    "migration_scripts",
    "open_engine",
]


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
