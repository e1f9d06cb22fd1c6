"""Operations: yank, delete, backup, integrity checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..models import (
    FileRecord,
)
from .core import Connections
from .rows import (
    FILE_SELECT,
    bump_serial,
    file_from,
)


class OperationQueries(Connections):
    def set_yanked(
        self, project: str, canonical_version: str, *, yanked: bool, reason: str = ""
    ) -> bool:
        """Yank (PEP 592) or unyank one release; bumps the serials so cached pages change.
        False when the project has no such release."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT r.id, p.id FROM releases r JOIN projects p ON p.id = r.project_id"
                " WHERE p.name = ? AND r.canonical_version = ?",
                (project, canonical_version),
            ).fetchone()
            if row is None:
                return False
            serial = bump_serial(conn)
            conn.execute(
                "UPDATE releases SET yanked = ?, yanked_reason = ? WHERE id = ?",
                (int(yanked), reason if yanked else "", row[0]),
            )
            conn.execute("UPDATE projects SET serial = ? WHERE id = ?", (serial, row[1]))
        return True

    def delete_files(
        self,
        project: str,
        canonical_version: str | None = None,
        filename: str | None = None,
        *,
        now: str,
    ) -> list[FileRecord]:
        """Delete a project, one release or one file in one transaction; return the deleted
        file rows so the caller can remove their files after the commit. Every deleted
        filename goes into deleted_files, so it can never come back with other bytes."""
        with self.transaction() as conn:
            found = conn.execute("SELECT id FROM projects WHERE name = ?", (project,)).fetchone()
            if found is None:
                return []
            project_id = found[0]
            query = FILE_SELECT + " WHERE r.project_id = ?"
            params: list[object] = [project_id]
            if canonical_version is not None:
                query += " AND r.canonical_version = ?"
                params.append(canonical_version)
            if filename is not None:
                query += " AND f.filename = ?"
                params.append(filename)
            records = [file_from(row, project) for row in conn.execute(query, params).fetchall()]
            conn.executemany(
                "INSERT INTO deleted_files (filename, sha256, deleted_at) VALUES (?, ?, ?)"
                " ON CONFLICT (filename) DO UPDATE SET deleted_at = excluded.deleted_at",
                [(record.filename, record.sha256, now) for record in records],
            )
            conn.executemany("DELETE FROM files WHERE id = ?", [(r.id,) for r in records])
            serial = bump_serial(conn)
            if canonical_version is None and filename is None:
                conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
            else:
                # A release without files is gone too (its yank state with it).
                conn.execute(
                    "DELETE FROM releases WHERE project_id = ? AND NOT EXISTS"
                    " (SELECT 1 FROM files f WHERE f.release_id = releases.id)",
                    (project_id,),
                )
                conn.execute("UPDATE projects SET serial = ? WHERE id = ?", (serial, project_id))
        return records

    def all_files(self) -> list[FileRecord]:
        """Every file row, for integrity checks and backups."""
        rows = self.conn.execute(
            FILE_SELECT.replace("FROM files f", ", p.name AS project FROM files f")
            + " JOIN projects p ON p.id = r.project_id ORDER BY f.id"
        ).fetchall()
        return [file_from(row, row["project"]) for row in rows]

    def storage_totals(self) -> tuple[int, int]:
        """(number of files, their total bytes) as recorded; /metrics reads this, not the disk."""
        row = self.conn.execute(
            "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM files"
        ).fetchone()
        return row[0], row[1]

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold SQLite's write lock without writing: no upload can be between publishing its
        file and committing its row meanwhile (ingest publishes inside its transaction)."""
        with self.transaction():
            yield

    def backup_to(self, target: Path) -> None:
        """A consistent online copy: the sqlite3 backup API in one step copies one read
        snapshot while writers go on (WAL). From PostgreSQL the copy is a SQLite file too
        (migrate-store's copy, verified; writers wait for it), so a backup restores into
        any data dir and `migrate-store` takes it back into PostgreSQL."""
        if self.dialect != "sqlite":
            from .transfer import copy_to_sqlite

            copy_to_sqlite(self, target)  # type: ignore[arg-type]
            return
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()

    def make_self_contained(self) -> None:
        """Leave WAL mode so the file alone is the database (backups); closes the connection."""
        self.conn.execute("PRAGMA journal_mode = DELETE")
        self.close()
