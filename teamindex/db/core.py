"""Connections, transactions and migrations: the base every query mixin builds on.

The engine (engines/sqlite.py, the reference, or engines/postgresql.py) does the work; this
class is the surface the mixins use, the same for both: `conn`, `transaction()`,
`savepoint()`, `waiting()`, `skippable()`, `migrate()`, `schema_version()`, `close()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from .engines import (
    Busy,
    Conflict,
    Conn,
    Engine,
    InvalidText,
    database_errors,
    integrity_errors,
    migration_scripts,
    open_engine,
)

# How long a statement waits for another connection's write lock (SQLite's busy timeout).
# CLI commands and the server's start-up wait long: their writer is usually a short one.
BUSY_TIMEOUT_MS = 30_000
# The server's requests wait a few seconds, then answer 503 (issue 10: a 30 s wait held a
# worker for every login, token use and upload while a backup or a CLI command wrote).
REQUEST_BUSY_TIMEOUT_MS = 3_000
# Bookkeeping a request can do without (a token's last use, the audit row of a refused
# login, download counts) waits only a moment, then is skipped.
SKIPPABLE_BUSY_TIMEOUT_MS = 200
SKIP_LOG_SECONDS = 60.0  # one log line per kind of skipped write per minute

log = logging.getLogger("teamindex")

__all__ = [
    "BUSY_TIMEOUT_MS",
    "REQUEST_BUSY_TIMEOUT_MS",
    "Busy",
    "Conflict",
    "Connections",
    "InvalidText",
    "database_errors",
    "integrity_errors",
    "migration_scripts",
]


class Connections:
    """One database (a SQLite file or a postgresql:// URL), a connection per thread."""

    def __init__(self, target: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.engine: Engine = open_engine(target, busy_timeout_ms)
        self._skips_logged: dict[str, float] = {}
        self._skips_lock = threading.Lock()

    @property
    def busy_timeout_ms(self) -> int:
        return self.engine.busy_timeout_ms

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql": for the few callers whose work is engine-specific."""
        return self.engine.name

    @property
    def conn(self) -> Conn:
        """This thread's connection, opened on first use and kept (waitress threads persist)."""
        return self.engine.conn

    def close(self) -> None:
        self.engine.close()

    def transaction(self) -> AbstractContextManager[Conn]:
        """A write transaction: writers serialize (BEGIN IMMEDIATE on SQLite, an advisory
        lock on PostgreSQL), COMMIT on success, ROLLBACK on any exception; a lock held by
        someone else past the busy timeout is raised as Busy."""
        return self.engine.transaction()

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside a transaction: undo only this block's writes when it raises (a batch of
        imports keeps the rows of the files before a refused one)."""
        return self.engine.savepoint()

    def waiting(self, busy_timeout_ms: int) -> AbstractContextManager[None]:
        """This thread's statements wait up to `busy_timeout_ms` for another writer, instead
        of the connection's usual time (e.g. the server's start-up waits as long as a CLI
        command, its requests only a few seconds)."""
        return self.engine.waiting(busy_timeout_ms)

    @contextmanager
    def skippable(self, what: str) -> Iterator[None]:
        """For a write a request can do without: it waits SKIPPABLE_BUSY_TIMEOUT_MS at most,
        and when another writer holds the lock it is skipped (the body stops at the Busy)
        with a log line at most every SKIP_LOG_SECONDS per kind, so a long backup neither
        fails nor slows the requests, nor floods the log."""
        try:
            with self.waiting(min(SKIPPABLE_BUSY_TIMEOUT_MS, self.busy_timeout_ms)):
                yield
        except Busy:
            now = time.monotonic()
            with self._skips_lock:
                last = self._skips_logged.get(what)
                due = last is None or now - last >= SKIP_LOG_SECONDS
                if due:
                    self._skips_logged[what] = now
            if due:
                log.warning("database busy (another writer holds the lock): skipped %s", what)

    def migrate(self) -> int:
        """Apply the numbered migrations not applied yet; return the schema version."""
        return self.engine.migrate()

    def schema_version(self) -> int:
        return self.engine.schema_version()
