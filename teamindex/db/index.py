"""The index itself: projects, releases and files, read and written."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..models import (
    FileRecord,
    NewFile,
    Project,
)
from .core import Conflict, Connections, integrity_errors
from .rows import (
    FILE_SELECT,
    bump_serial,
    file_from,
    project_from,
)


class IndexQueries(Connections):
    def serial(self) -> int:
        """The index-wide change counter; caches compare it instead of re-reading."""
        return self.conn.execute("SELECT serial FROM state WHERE id = 1").fetchone()[0]

    def serials(self) -> tuple[int, int]:
        """(index serial, auth serial) in one statement: all the hot path needs for /simple/."""
        row = self.conn.execute("SELECT serial, auth_serial FROM state WHERE id = 1").fetchone()
        return row[0], row[1]

    def project_with_role_at(
        self, name: str, user_id: int | None
    ) -> tuple[int, Project | None, str | None]:
        """The auth serial, the project and the user's role in it, in one statement: the
        hot path's only database read for a project page."""
        row = self.conn.execute(
            "SELECT s.auth_serial, p.id, p.name, p.display_name, p.serial, p.visibility, r.role"
            " FROM state s LEFT JOIN projects p ON p.name = ?"
            " LEFT JOIN roles r ON r.project_id = p.id AND r.user_id = ? WHERE s.id = 1",
            (name, user_id),
        ).fetchone()
        project = project_from(row) if row["id"] is not None else None
        return row["auth_serial"], project, row["role"]

    def file_with_role_at(
        self, filename: str, user_id: int | None
    ) -> tuple[int, FileRecord | None, str, str | None]:
        """The auth serial, the file, its project's visibility and the user's role there, in
        one statement: the hot path's only database read for a download."""
        row = self.conn.execute(
            "SELECT s.auth_serial, f.id, r.version, f.filename, f.packagetype,"
            " f.python_version, f.requires_python, f.size, f.sha256, f.blake2_256, f.md5,"
            " f.metadata_sha256, f.upload_time, r.yanked, r.yanked_reason,"
            " p.name AS project, p.visibility, ro.role"
            " FROM state s LEFT JOIN files f ON f.filename = ?"
            " LEFT JOIN releases r ON r.id = f.release_id"
            " LEFT JOIN projects p ON p.id = r.project_id"
            " LEFT JOIN roles ro ON ro.project_id = p.id AND ro.user_id = ? WHERE s.id = 1",
            (filename, user_id),
        ).fetchone()
        if row["id"] is None or row["project"] is None:
            return row["auth_serial"], None, "", None
        return row["auth_serial"], file_from(row, row["project"]), row["visibility"], row["role"]

    def get_project(self, name: str) -> Project | None:
        row = self.conn.execute(
            "SELECT id, name, display_name, serial, visibility FROM projects WHERE name = ?",
            (name,),
        ).fetchone()
        return project_from(row) if row else None

    def project_with_role(
        self, name: str, user_id: int | None
    ) -> tuple[Project | None, str | None]:
        """The project and the user's role in it, in one query (the hot path of every read)."""
        row = self.conn.execute(
            "SELECT p.id, p.name, p.display_name, p.serial, p.visibility, r.role FROM projects p"
            " LEFT JOIN roles r ON r.project_id = p.id AND r.user_id = ? WHERE p.name = ?",
            (user_id, name),
        ).fetchone()
        return (project_from(row), row["role"]) if row else (None, None)

    def list_projects(
        self, *, viewer_id: int | None = None, everything: bool = True
    ) -> list[tuple[str, str]]:
        """(normalized name, display name) of projects with files; unless `everything`, only
        team-visible ones and restricted ones where `viewer_id` holds a role."""
        rows = self.conn.execute(
            "SELECT p.name, p.display_name FROM projects p"
            " WHERE EXISTS (SELECT 1 FROM releases r JOIN files f ON f.release_id = r.id"
            "               WHERE r.project_id = p.id)"
            "   AND (? OR p.visibility = 'team' OR EXISTS"
            "        (SELECT 1 FROM roles o WHERE o.project_id = p.id AND o.user_id = ?))"
            " ORDER BY p.name",
            (everything, viewer_id),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def project_names(self) -> list[str]:
        """Every project name here, reserved ones (no files yet) included: the names that
        shadow upstream (issue 13)."""
        return [row[0] for row in self.conn.execute("SELECT name FROM projects ORDER BY name")]

    def project_files(self, project: Project) -> list[FileRecord]:
        """Every file of a project in one indexed query (a page never costs a query per file)."""
        rows = self.conn.execute(
            FILE_SELECT + " WHERE r.project_id = ? ORDER BY f.filename", (project.id,)
        ).fetchall()
        return [file_from(row, project.name) for row in rows]

    def get_file(self, filename: str) -> FileRecord | None:
        row = self.conn.execute(
            FILE_SELECT.replace("FROM files f", ", p.name AS project FROM files f")
            + " JOIN projects p ON p.id = r.project_id WHERE f.filename = ?",
            (filename,),
        ).fetchone()
        return file_from(row, row["project"]) if row else None

    def deleted_file_sha256(self, filename: str) -> str | None:
        row = self.conn.execute(
            "SELECT sha256 FROM deleted_files WHERE filename = ?", (filename,)
        ).fetchone()
        return row[0] if row else None

    def release_filenames(self, project: str, canonical_version: str) -> list[tuple[str, str]]:
        """(filename, sha256) of one release's files: the other spellings a new file could
        collide with all live here (same project, same version)."""
        rows = self.conn.execute(
            "SELECT f.filename, f.sha256 FROM files f JOIN releases r ON r.id = f.release_id"
            " JOIN projects p ON p.id = r.project_id"
            " WHERE p.name = ? AND r.canonical_version = ?",
            (project, canonical_version),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def deleted_filenames_like(self, pattern: str) -> list[tuple[str, str]]:
        """(filename, sha256) of deleted files matching a LIKE pattern (ASCII case-blind)."""
        rows = self.conn.execute(
            "SELECT filename, sha256 FROM deleted_files WHERE lower(filename) LIKE lower(?)",
            (pattern,),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def role(self, user_id: int, project_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT role FROM roles WHERE user_id = ? AND project_id = ?", (user_id, project_id)
        ).fetchone()
        return row[0] if row else None

    # -- writing the index ------------------------------------------------------------------

    def insert_file(self, new: NewFile) -> None:
        """Record a new file inside the caller's transaction(): project (first uploader
        becomes owner), release and file rows, and a new serial. Raises Conflict on a
        duplicate filename or content."""
        conn = self.conn
        serial = bump_serial(conn)
        release_id = self._release_for(self._project_for(new, serial), new)
        try:
            conn.execute(FILE_INSERT, _file_row(release_id, new))
        except integrity_errors() as exc:
            raise Conflict(f"file {new.filename!r} already exists") from exc

    def filename_by_sha256(self, sha256: str) -> str | None:
        row = self.conn.execute("SELECT filename FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    # Batched reads and writes for ingest_batch (issue 14: an import spent its time in ~13
    # statements per file). Each answers for a whole batch inside the caller's transaction.

    def files_named(self, filenames: Sequence[str]) -> dict[str, FileRecord]:
        """get_file() for many names at once: the ones stored, by filename."""
        select = (
            FILE_SELECT.replace("FROM files f", ", p.name AS project FROM files f")
            + " JOIN projects p ON p.id = r.project_id WHERE f.filename IN"
        )
        return {
            row["filename"]: file_from(row, row["project"])
            for row in self._rows_in(select, filenames)
        }

    def filenames_by_sha256(self, digests: Sequence[str]) -> dict[str, str]:
        """filename_by_sha256() for many digests: sha256 -> the filename holding it."""
        select = "SELECT sha256, filename FROM files WHERE sha256 IN"
        return {row[0]: row[1] for row in self._rows_in(select, digests)}

    def deleted_sha256s(self, filenames: Sequence[str]) -> dict[str, str]:
        """deleted_file_sha256() for many names: filename -> the sha256 it had."""
        select = "SELECT filename, sha256 FROM deleted_files WHERE filename IN"
        return {row[0]: row[1] for row in self._rows_in(select, filenames)}

    def _rows_in(self, select: str, values: Sequence[str]) -> Iterator[Any]:
        """The rows of `select` (which ends in `IN`) for every value, asked in chunks that
        stay under SQLite's limit on host parameters."""
        for chunk in _chunks(values):
            yield from self.conn.execute(f"{select} ({_marks(chunk)})", chunk)

    def project_release_filenames(self, project: str) -> dict[str, list[tuple[str, str]]]:
        """release_filenames() of every release of a project: canonical version ->
        [(filename, sha256)]."""
        rows = self.conn.execute(
            "SELECT r.canonical_version, f.filename, f.sha256 FROM files f"
            " JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id"
            " WHERE p.name = ?",
            (project,),
        ).fetchall()
        found: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            found.setdefault(row[0], []).append((row[1], row[2]))
        return found

    def insert_files(self, news: Sequence[NewFile]) -> None:
        """insert_file() for many files, in order, with one new serial for all of them
        (they commit together, so no reader can see a serial in between): each project
        looked up or created once, each release once, the file rows in one executemany.
        Raises Conflict on a duplicate filename or content."""
        if not news:
            return
        conn = self.conn
        serial = bump_serial(conn)
        project_ids: dict[str, int] = {}
        release_ids: dict[tuple[int, str], int] = {}
        rows = []
        for new in news:
            project_id = project_ids.get(new.project)
            if project_id is None:
                project_id = self._project_for(new, serial)
                project_ids[new.project] = project_id
            key = (project_id, new.canonical_version)
            release_id = release_ids.get(key)
            if release_id is None:
                release_id = self._release_for(project_id, new)
                release_ids[key] = release_id
            rows.append(_file_row(release_id, new))
        try:
            conn.executemany(FILE_INSERT, rows)
        except integrity_errors() as exc:
            raise Conflict(f"a file of this batch already exists ({exc})") from exc

    def _project_for(self, new: NewFile, serial: int) -> int:
        """The project's id, created (first uploader as owner) or its serial bumped."""
        conn = self.conn
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (new.project,)).fetchone()
        if row is not None:
            conn.execute("UPDATE projects SET serial = ? WHERE id = ?", (serial, row[0]))
            return int(row[0])
        project_id = conn.execute(
            "INSERT INTO projects (name, display_name, created, serial) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (new.project, new.display_name, new.upload_time, serial),
        ).fetchone()[0]
        if new.uploader_id is not None:
            conn.execute(
                "INSERT INTO roles (user_id, project_id, role) VALUES (?, ?, 'owner')",
                (new.uploader_id, project_id),
            )
        return int(project_id)

    def _release_for(self, project_id: int, new: NewFile) -> int:
        """The release's id; the first file of a version creates it with its metadata."""
        conn = self.conn
        row = conn.execute(
            "INSERT INTO releases (project_id, version, canonical_version, summary,"
            " metadata_json, created) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project_id, canonical_version) DO NOTHING RETURNING id",
            (
                project_id,
                new.version,
                new.canonical_version,
                new.summary,
                new.metadata_json,
                new.upload_time,
            ),
        ).fetchone()
        if row is not None:
            return int(row[0])
        return int(
            conn.execute(
                "SELECT id FROM releases WHERE project_id = ? AND canonical_version = ?",
                (project_id, new.canonical_version),
            ).fetchone()[0]
        )


FILE_INSERT = (
    "INSERT INTO files (release_id, filename, packagetype, python_version, requires_python,"
    " size, sha256, blake2_256, md5, metadata_sha256, upload_time, uploader_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _file_row(release_id: int, new: NewFile) -> tuple[object, ...]:
    """FILE_INSERT's values for `new` in release `release_id` (uploads and batches alike)."""
    return (
        release_id,
        new.filename,
        new.packagetype,
        new.python_version,
        new.requires_python,
        new.size,
        new.sha256,
        new.blake2_256,
        new.md5,
        new.metadata_sha256,
        new.upload_time,
        new.uploader_id,
    )


IN_CHUNK = 500  # host parameters per IN (...) list, well under SQLite's limit


def _chunks(values: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(values))
    return [unique[i : i + IN_CHUNK] for i in range(0, len(unique), IN_CHUNK)]


def _marks(chunk: Sequence[str]) -> str:
    """Only question marks go into the SQL text; the values are bound."""
    return ", ".join("?" * len(chunk))
