"""Copy a whole database from one engine to the other (`teamindex migrate-store`): SQLite to
PostgreSQL, or back; ids and serials kept, then verified table by table.

The copy runs as one write transaction on each side (both write locks held: no writer
changes the source while it is read, and the target shows all or nothing). Verification
reads both again: the row count and a digest of every row of each table must agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Database

# Every table, parents before children (foreign keys hold at every insert). `state` comes
# last: the triggers of the tables before it bump its serials, so its row is written
# (with the source's serials) after them.
TABLES = (
    "users",
    "projects",
    "roles",
    "releases",
    "files",
    "deleted_files",
    "tokens",
    "allowlist",
    "audit",
    "download_counts",
    "docs",
    "sessions",
    "throttle",
    "known_addresses",
    "upstream_protected",
    "upstream_rules",
    "publishers",
    "oidc_seen",
    "minted_tokens",
    "state",
)
# Tables whose ids the database hands out: the target continues after the source's
# highest, or after a higher id the source handed out once (user ids are never reused).
ID_TABLES = ("users", "projects", "releases", "files", "tokens", "allowlist", "audit", "publishers")
BATCH = 1000
MOD = 1 << 256


class TransferError(Exception):
    """The copy cannot start (a target holding data) or did not verify."""


@dataclass(frozen=True)
class TableReport:
    table: str
    rows: int
    digest: str


def columns(db: Database, table: str) -> list[str]:
    """The table's columns (both schemas name the same ones)."""
    return db.engine.column_names(table)


def tables(db: Database) -> set[str]:
    """The application's tables (the engine's bookkeeping ones left out)."""
    return db.engine.table_names()


def _quoted(names: list[str]) -> str:
    """Column names as SQL (from the schema, never from input); "user" needs the quotes."""
    return ", ".join(f'"{name}"' for name in names)


def _select(table: str, names: list[str]) -> str:
    return f'SELECT {_quoted(names)} FROM "{table}"'  # noqa: S608 - names from the schema


def _rows(db: Database, table: str, names: list[str]) -> Iterable[tuple[Any, ...]]:
    cursor = db.conn.execute(_select(table, names))
    while True:
        batch = cursor.fetchmany(BATCH)
        if not batch:
            return
        for row in batch:
            yield tuple(row)


def _row_hash(row: tuple[Any, ...]) -> int:
    """A row's value, the same from either engine (ints, floats, text, NULL)."""
    text = repr(tuple(float(v) if isinstance(v, float) else v for v in row))
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def table_reports(db: Database) -> list[TableReport]:
    """Per table: rows and a digest of all of them (a sum of row hashes: the same for the
    same rows in whatever order each engine returns them, collations aside)."""
    reports = []
    for table in TABLES:
        names = columns(db, table)
        count, total = 0, 0
        for row in _rows(db, table, sorted(names)):
            count += 1
            total = (total + _row_hash(row)) % MOD
        reports.append(TableReport(table, count, f"{total:064x}"))
    return reports


def _check_schemas(source: Database, target: Database) -> None:
    for db in (source, target):
        if tables(db) != set(TABLES):
            extra = sorted(tables(db) ^ set(TABLES))
            raise TransferError(f"unexpected tables in the {db.dialect} database: {extra}")
    if source.schema_version() != target.schema_version():
        raise TransferError(
            f"schema versions differ: source {source.schema_version()}, "
            f"target {target.schema_version()}"
        )


def _refuse_non_empty(target: Database) -> None:
    for table in TABLES:
        if table == "state":
            continue
        if target.conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():  # noqa: S608
            raise TransferError(
                f"the target database is not empty (table {table} has rows); "
                "migrate-store copies into an empty, freshly migrated database only"
            )


def refuse_non_empty(target: Database) -> None:
    """Raise TransferError when `target` holds rows (migrate-store checks this before it
    copies any file; copy_database checks again inside its transaction)."""
    _refuse_non_empty(target)


def copy_database(
    source: Database, target: Database, *, progress: Callable[[str, int], None] | None = None
) -> list[TableReport]:
    """Copy every row of `source` into the empty, migrated `target` and verify; the
    verified per-table reports. Raises TransferError (the target then holds nothing).
    Files are not this module's: the caller copies storage (and verifies it) separately."""
    _check_schemas(source, target)
    with source.transaction(), target.transaction() as out:
        _refuse_non_empty(target)
        out.execute("DELETE FROM state")
        for table in TABLES:
            names = columns(source, table)
            marks = ", ".join("?" for _ in names)
            insert = f'INSERT INTO "{table}" ({_quoted(names)}) VALUES ({marks})'  # noqa: S608
            rows = 0
            batch: list[tuple[Any, ...]] = []
            for row in _rows(source, table, names):
                batch.append(row)
                if len(batch) >= BATCH:
                    out.executemany(insert, batch)
                    rows += len(batch)
                    batch = []
            if batch:
                out.executemany(insert, batch)
                rows += len(batch)
            if progress is not None:
                progress(table, rows)
        for table in ID_TABLES:
            target.engine.reserve_ids(table, source.engine.ids_used(table))
        # Inside both transactions: a difference rolls the target back to empty.
        return verify(source, target)


def verify(source: Database, target: Database) -> list[TableReport]:
    """Compare both databases table by table; raises TransferError on any difference."""
    expected, found = table_reports(source), table_reports(target)
    for want, got in zip(expected, found, strict=True):
        if want != got:
            raise TransferError(
                f"table {want.table} differs after the copy: {want.rows} rows in the source, "
                f"{got.rows} in the target (digests {want.digest[:12]} / {got.digest[:12]})"
            )
    return found


def copy_to_sqlite(source: Database, path: Path) -> list[TableReport]:
    """Copy `source` into a new SQLite file at `path` (a PostgreSQL database's backup)."""
    target = type(source)(path)  # a Database, made without importing the package here
    try:
        target.migrate()
        return copy_database(source, target)
    finally:
        target.close()
