"""PostgreSQL (psycopg 3 and psycopg_pool): the same surface as the SQLite engine.

Writers serialize exactly as on SQLite: every write transaction starts by taking one
transaction-level advisory lock under `lock_timeout` (the busy timeout), so the code's
read-then-insert checks and serial bumps see no other writer in between, and a writer that
waits too long gets Busy. Readers take no lock and never wait (MVCC). Each statement outside
a transaction is its own (autocommit), as on SQLite.

Connections come from a pool made on first use in each process (workers fork first), one
checked out per thread and kept, as SQLite keeps one per thread. Parameters are bound on the
client (psycopg's ClientCursor): the queries' `? IS NULL OR ...` filters take an untyped
None or text, which the server cannot type as a bound parameter, and a read is then one
simple-protocol round trip.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from .base import Busy, InvalidText, migration_scripts

# The advisory lock keys (any constants; no other application shares the database).
WRITE_LOCK = 0x7465616D  # "team": every write transaction
MIGRATE_LOCK = 0x6D696772  # "migr": migrate() in several processes at once
POOL_MAX = 64  # connections per process: threads of waitress plus CLI/background work
POOL_WAIT_S = 30.0  # a thread waits this long for a free connection, then fails
NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """SQLite's placeholders as psycopg's: `?` -> `%s`, `:name` -> `%(name)s`, and a
    literal `%` doubled. The query texts are constants, so each is translated once."""
    return NAMED.sub(r"%(\1)s", sql.replace("%", "%%")).replace("?", "%s")


class Row(tuple):  # type: ignore[type-arg]
    """A row readable by position and by column name, like sqlite3.Row."""

    columns: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.columns)


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    columns = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row.columns = columns
        return row

    return make


def mapped(exc: BaseException) -> BaseException | None:
    """The error callers expect for a driver error: Busy for a lock wait past the timeout
    (or a deadlock), OSError(ENOSPC) for a full disk; None: raise it as it is."""
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.DeadlockDetected):
        return Busy(f"database is locked by another writer: {exc}")
    if isinstance(exc, pg_errors.DiskFull):
        return OSError(errno.ENOSPC, f"database full: {exc}")
    return None


def raise_mapped(exc: BaseException) -> NoReturn:
    """Raise the error callers expect for `exc` (mapped), chained to it; else `exc` itself."""
    better = mapped(exc)
    if better is not None:
        raise better from exc
    raise exc


def check_text(parameters: Any) -> None:
    """PostgreSQL's text holds no NUL character (SQLite's does): a value with one can match
    no stored row and cannot be stored, so it is refused as InvalidText (a 4xx), never
    sent (psycopg would raise a DataError: a 500)."""
    if not parameters:
        return
    values = parameters.values() if isinstance(parameters, dict) else parameters
    for value in values:
        if isinstance(value, str) and "\x00" in value:
            raise InvalidText("text with a NUL character")


class PgConn:
    """A psycopg connection that takes the mixins' SQLite-style statements."""

    def __init__(self, raw: psycopg.Connection[Row]) -> None:
        self.raw = raw
        self.trace: Callable[[str], object] | None = None

    def set_trace_callback(self, trace: Callable[[str], object] | None) -> None:
        """As sqlite3's: `trace` sees every statement (tests count a request's queries)."""
        self.trace = trace

    def execute(self, sql: str, parameters: Any = None) -> psycopg.Cursor[Row]:
        if self.trace is not None:
            self.trace(sql)
        check_text(parameters)
        cursor = self.raw.cursor()
        try:
            if parameters:
                cursor.execute(translate(sql), parameters)  # type: ignore[arg-type]
            else:
                cursor.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise_mapped(exc)
        return cursor

    def executemany(self, sql: str, parameters: Any) -> psycopg.Cursor[Row]:
        if self.trace is not None:
            self.trace(sql)
        cursor = self.raw.cursor()
        rows = list(parameters)
        for row in rows:
            check_text(row)
        if rows:
            try:
                cursor.executemany(translate(sql), rows)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                raise_mapped(exc)
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE


class PostgresEngine:
    """One PostgreSQL database by URL; a pooled connection per thread."""

    name = "postgresql"

    def __init__(self, url: str, *, busy_timeout_ms: int) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._pool_pid = 0
        self._generation = 0  # bumped by close(): threads then fetch a new connection
        self._out: list[psycopg.Connection[Any]] = []  # checked out, closed by close()

    def _configure(self, raw: psycopg.Connection[Any]) -> None:
        raw.execute(f"SET lock_timeout = {int(self.busy_timeout_ms)}")  # type: ignore[arg-type]

    def _get_pool(self) -> ConnectionPool[Any]:
        """This process's pool, made on first use: a pool (its threads and sockets) made
        before a fork is never used by the child."""
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ConnectionPool(
                    self.url,
                    kwargs={
                        "autocommit": True,
                        "row_factory": row_factory,
                        "cursor_factory": psycopg.ClientCursor,
                    },
                    min_size=1,
                    max_size=POOL_MAX,
                    open=True,
                    configure=self._configure,
                    timeout=POOL_WAIT_S,
                    name="teamindex",
                )
                self._pool_pid = os.getpid()
                self._out = []
            return self._pool

    @property
    def conn(self) -> PgConn:
        """This thread's connection, checked out on first use and kept; a broken one (the
        server restarted) is handed back and replaced."""
        local = self._local
        conn: PgConn | None = getattr(local, "conn", None)
        if conn is not None and (
            local.generation != self._generation
            or local.pid != os.getpid()
            or conn.raw.closed
            or conn.raw.broken
        ):
            self._release(conn, local.pid)
            conn = None
        if conn is None:
            pool = self._get_pool()
            raw = pool.getconn()
            with self._lock:
                self._out.append(raw)
            conn = local.conn = PgConn(raw)
            local.generation = self._generation
            local.pid = os.getpid()
            local.timeout = self.busy_timeout_ms
        return conn

    def _release(self, conn: PgConn, pid: int) -> None:
        self._local.conn = None
        if pid != os.getpid():
            return  # the parent's connection: never touch its socket in a child
        with self._lock:
            if conn.raw in self._out:
                self._out.remove(conn.raw)
            pool = self._pool
        if pool is not None and not conn.raw.closed:
            if conn.in_transaction and not conn.raw.broken:
                conn.raw.rollback()
            pool.putconn(conn.raw)
        elif not conn.raw.closed:
            conn.raw.close()

    def close(self) -> None:
        """Close every connection of this process (not only this thread's): before a fork,
        at the end of a test, before a database is dropped or copied."""
        with self._lock:
            pool, out = self._pool, self._out
            self._pool, self._out = None, []
            self._generation += 1
            mine = self._pool_pid == os.getpid()
        self._local.conn = None
        if not mine:
            return
        for raw in out:
            raw.close()
        if pool is not None:
            pool.close()

    @contextmanager
    def transaction(self) -> Iterator[PgConn]:
        """A write transaction behind the write lock (see the module's docstring)."""
        conn = self.conn
        raw = conn.raw
        raw.execute("BEGIN")
        try:
            raw.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")  # type: ignore[arg-type]
            yield conn
            raw.execute("COMMIT")
        except BaseException as exc:
            if not raw.closed and not raw.broken and conn.in_transaction:
                raw.execute("ROLLBACK")
            raise_mapped(exc)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises."""
        raw = self.conn.raw
        raw.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            raw.execute("ROLLBACK TO SAVEPOINT item")
            raw.execute("RELEASE SAVEPOINT item")
            raise
        raw.execute("RELEASE SAVEPOINT item")

    @contextmanager
    def waiting(self, busy_timeout_ms: int) -> Iterator[None]:
        """This thread's lock waits (the write lock, a row lock) last up to
        `busy_timeout_ms`: lock_timeout plays SQLite's busy_timeout."""
        conn = self.conn
        previous = self._local.timeout
        conn.raw.execute(f"SET lock_timeout = {int(busy_timeout_ms)}")  # type: ignore[arg-type]
        self._local.timeout = busy_timeout_ms
        try:
            yield
        finally:
            self._local.timeout = previous
            if not conn.raw.closed and not conn.raw.broken:
                conn.raw.execute(f"SET lock_timeout = {int(previous)}")  # type: ignore[arg-type]

    def migrate(self) -> int:
        """Apply the migrations of migrations/postgresql/ past the version in
        schema_version; the same numbers as SQLite's. One process at a time migrates
        (a session advisory lock), so servers and workers starting together are safe."""
        raw = self.conn.raw
        raw.execute(f"SELECT pg_advisory_lock({MIGRATE_LOCK})")  # type: ignore[arg-type]
        try:
            raw.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY"
                " CHECK (id = 1), version INTEGER NOT NULL)"
            )
            raw.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING"
            )
            current = self.schema_version()
            for number, script in migration_scripts("teamindex.migrations.postgresql"):
                if number <= current:
                    continue
                with raw.transaction():
                    raw.execute(script)  # type: ignore[arg-type]
                    raw.execute("UPDATE schema_version SET version = %s", (number,))
                current = number
            return current
        finally:
            if not raw.closed and not raw.broken:
                raw.execute(f"SELECT pg_advisory_unlock({MIGRATE_LOCK})")  # type: ignore[arg-type]

    def schema_version(self) -> int:
        conn = self.conn
        if conn.execute("SELECT to_regclass('schema_version') IS NULL").fetchone()[0]:
            return 0
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def ids_used(self, table: str) -> int:
        """The highest id `table`'s identity handed out (or holds, if rows were copied in)."""
        conn = self.conn
        sequence = conn.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]
        last, called = conn.execute(
            f"SELECT last_value, is_called FROM {sequence}"  # noqa: S608 - from the catalog
        ).fetchone()
        highest = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # noqa: S608
        return max(int(highest), int(last) if called else 0)

    def reserve_ids(self, table: str, used: int) -> None:
        """The identity of `table` continues after `used` (rows copied in with their ids
        do not move it)."""
        if used > 0:
            self.conn.execute("SELECT setval(pg_get_serial_sequence(?, 'id'), ?)", (table, used))

    def table_names(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        return {row[0] for row in rows} - {"schema_version"}

    def column_names(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [row[0] for row in rows]
