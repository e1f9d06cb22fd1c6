"""The only module with SQL. One connection per thread, WAL, writers take BEGIN IMMEDIATE.

Readers never wait for the writer (WAL); writers serialize on SQLite's own lock, across the
server and any CLI process. Durability: synchronous=FULL, so a COMMIT that returned is on disk.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .models import FileRecord, NewFile, Project, User

BUSY_TIMEOUT_MS = 30_000


class Conflict(Exception):
    """A write broke a uniqueness rule (existing user, file, ...)."""


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("teamindex.migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """Access to one SQLite file; every query of the application is a method here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------

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
        deadlocks), COMMIT on success, ROLLBACK on any exception."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self) -> int:
        """Apply numbered migrations past PRAGMA user_version; return the schema version."""
        conn = self.conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in _migrations():
            if number <= current:
                continue
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
            current = number
        return current

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # -- users ---------------------------------------------------------------------------

    def get_user(self, name: str) -> User | None:
        row = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users WHERE name = ?", (name,)
        ).fetchone()
        return _user(row) if row else None

    def list_users(self) -> list[User]:
        rows = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users ORDER BY name"
        ).fetchall()
        return [_user(row) for row in rows]

    def count_users(self) -> int:
        return self.conn.execute("SELECT count(*) FROM users").fetchone()[0]

    def add_user(self, name: str, password_hash: str, *, is_admin: bool, now: str) -> User:
        try:
            with self.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO users (name, password_hash, is_admin, created)"
                    " VALUES (?, ?, ?, ?)",
                    (name, password_hash, int(is_admin), now),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"user {name!r} already exists") from exc
        return User(int(cursor.lastrowid or 0), name, password_hash, is_admin)

    def set_password(self, name: str, password_hash: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )
        return cursor.rowcount == 1

    def delete_user(self, name: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM users WHERE name = ?", (name,))
        return cursor.rowcount == 1

    # -- reading the index ------------------------------------------------------------------

    def serial(self) -> int:
        """The index-wide change counter; caches compare it instead of re-reading."""
        return self.conn.execute("SELECT serial FROM state WHERE id = 1").fetchone()[0]

    def get_project(self, name: str) -> Project | None:
        row = self.conn.execute(
            "SELECT id, name, display_name, serial FROM projects WHERE name = ?", (name,)
        ).fetchone()
        return Project(row["id"], row["name"], row["display_name"], row["serial"]) if row else None

    def list_projects(self) -> list[tuple[str, str]]:
        """(normalized name, display name) of every project that has at least one file."""
        rows = self.conn.execute(
            "SELECT p.name, p.display_name FROM projects p"
            " WHERE EXISTS (SELECT 1 FROM releases r JOIN files f ON f.release_id = r.id"
            "               WHERE r.project_id = p.id)"
            " ORDER BY p.name"
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def project_files(self, project: Project) -> list[FileRecord]:
        """Every file of a project in one indexed query (a page never costs a query per file)."""
        rows = self.conn.execute(
            _FILE_SELECT + " WHERE r.project_id = ? ORDER BY f.filename", (project.id,)
        ).fetchall()
        return [_file(row, project.name) for row in rows]

    def get_file(self, filename: str) -> FileRecord | None:
        row = self.conn.execute(
            _FILE_SELECT.replace("FROM files f", ", p.name AS project FROM files f")
            + " JOIN projects p ON p.id = r.project_id WHERE f.filename = ?",
            (filename,),
        ).fetchone()
        return _file(row, row["project"]) if row else None

    def deleted_file_sha256(self, filename: str) -> str | None:
        row = self.conn.execute(
            "SELECT sha256 FROM deleted_files WHERE filename = ?", (filename,)
        ).fetchone()
        return row[0] if row else None

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
        serial = _bump_serial(conn)
        project = conn.execute("SELECT id FROM projects WHERE name = ?", (new.project,)).fetchone()
        if project is None:
            project_id = conn.execute(
                "INSERT INTO projects (name, display_name, created, serial) VALUES (?, ?, ?, ?)",
                (new.project, new.display_name, new.upload_time, serial),
            ).lastrowid
            if new.uploader_id is not None:
                conn.execute(
                    "INSERT INTO roles (user_id, project_id, role) VALUES (?, ?, 'owner')",
                    (new.uploader_id, project_id),
                )
        else:
            project_id = project[0]
            conn.execute("UPDATE projects SET serial = ? WHERE id = ?", (serial, project_id))
        conn.execute(
            "INSERT INTO releases (project_id, version, canonical_version, summary,"
            " metadata_json, created) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project_id, canonical_version) DO NOTHING",
            (
                project_id,
                new.version,
                new.canonical_version,
                new.summary,
                new.metadata_json,
                new.upload_time,
            ),
        )
        release_id = conn.execute(
            "SELECT id FROM releases WHERE project_id = ? AND canonical_version = ?",
            (project_id, new.canonical_version),
        ).fetchone()[0]
        try:
            conn.execute(
                "INSERT INTO files (release_id, filename, packagetype, python_version,"
                " requires_python, size, sha256, blake2_256, md5, metadata_sha256, upload_time,"
                " uploader_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"file {new.filename!r} already exists") from exc

    def filename_by_sha256(self, sha256: str) -> str | None:
        row = self.conn.execute("SELECT filename FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None


_FILE_SELECT = (
    "SELECT f.id, r.version, f.filename, f.packagetype, f.python_version, f.requires_python,"
    " f.size, f.sha256, f.blake2_256, f.md5, f.metadata_sha256, f.upload_time,"
    " r.yanked, r.yanked_reason"
    " FROM files f JOIN releases r ON r.id = f.release_id"
)


def _bump_serial(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "UPDATE state SET serial = serial + 1 WHERE id = 1 RETURNING serial"
    ).fetchone()[0]


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["name"], row["password_hash"], bool(row["is_admin"]))


def _file(row: sqlite3.Row, project: str) -> FileRecord:
    return FileRecord(
        id=row["id"],
        project=project,
        version=row["version"],
        filename=row["filename"],
        packagetype=row["packagetype"],
        python_version=row["python_version"],
        requires_python=row["requires_python"],
        size=row["size"],
        sha256=row["sha256"],
        blake2_256=row["blake2_256"],
        md5=row["md5"],
        metadata_sha256=row["metadata_sha256"],
        upload_time=row["upload_time"],
        yanked=bool(row["yanked"]),
        yanked_reason=row["yanked_reason"],
    )
