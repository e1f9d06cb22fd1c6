"""The only module with SQL. One connection per thread, WAL, writers take BEGIN IMMEDIATE.

Readers never wait for the writer (WAL); writers serialize on SQLite's own lock, across the
server and any CLI process. Durability: synchronous=FULL, so a COMMIT that returned is on disk.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .models import (
    AllowEntry,
    AuditEvent,
    DocsBuild,
    FileRecord,
    LoginFacts,
    NewFile,
    Project,
    ReleaseInfo,
    Token,
    User,
)

BUSY_TIMEOUT_MS = 30_000


class Conflict(Exception):
    """A write broke a uniqueness rule (existing user, file, ...)."""


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("teamindex.migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    found.sort()
    # A gap would be skipped forever by databases already past it (user_version only grows).
    numbers = [number for number, _script in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


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
        deadlocks), COMMIT on success, ROLLBACK on any exception (a failed COMMIT too).
        SQLITE_FULL is raised as OSError(ENOSPC): a full database is a full disk to callers."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, f"database full: {exc}") from exc
            raise

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

    def password_login(self, name: str) -> LoginFacts:
        """The user named `name` (if any) and the allowlists, in one statement: every
        authenticated request runs it, and each statement is a GIL round trip."""
        row = self.conn.execute(
            "SELECT u.id, u.name, u.password_hash, u.is_admin,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id IS NULL)"
            " AS global_cidrs,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id = u.id) AS user_cidrs"
            " FROM (SELECT 1) LEFT JOIN users u ON u.name = ?",
            (name,),
        ).fetchone()
        user = _user(row) if row["id"] is not None else None
        return LoginFacts(user, None, *_allowlists(row))

    def token_login(self, digest: str) -> LoginFacts:
        """The token with this digest, its owner and the allowlists, in one statement."""
        row = self.conn.execute(
            "SELECT t.id AS token_id, t.user_id, t.scope, t.projects, t.allow_ips, t.note,"
            " t.created, t.expires, t.revoked, t.last_used, t.last_ip, u.name AS user_name,"
            " u.id, u.name, u.password_hash, u.is_admin,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id IS NULL)"
            " AS global_cidrs,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id = u.id) AS user_cidrs"
            " FROM (SELECT 1) LEFT JOIN tokens t ON t.digest = ?"
            " LEFT JOIN users u ON u.id = t.user_id",
            (digest,),
        ).fetchone()
        if row["token_id"] is None or row["id"] is None:
            return LoginFacts(None, None, *_allowlists(row))
        token = _token(row, id_column="token_id")
        return LoginFacts(_user(row), token, *_allowlists(row))

    def get_user_by_id(self, user_id: int) -> User | None:
        row = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users WHERE id = ?", (user_id,)
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

    # -- access control: projects, roles, tokens, allowlists, audit ------------------------

    def create_project(self, name: str, display_name: str, visibility: str, now: str) -> Project:
        """Reserve a project name ahead of its first upload (admins only, checked by caller)."""
        try:
            with self.transaction() as conn:
                serial = _bump_serial(conn)
                conn.execute(
                    "INSERT INTO projects (name, display_name, created, serial, visibility)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, display_name, now, serial, visibility),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"project {name!r} already exists") from exc
        project = self.get_project(name)
        assert project is not None
        return project

    def set_visibility(self, name: str, visibility: str) -> bool:
        with self.transaction() as conn:
            serial = _bump_serial(conn)
            cursor = conn.execute(
                "UPDATE projects SET visibility = ?, serial = ? WHERE name = ?",
                (visibility, serial, name),
            )
        return cursor.rowcount == 1

    def set_role(self, user_id: int, project_id: int, role: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO roles (user_id, project_id, role) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, project_id) DO UPDATE SET role = excluded.role",
                (user_id, project_id, role),
            )
            _bump_serial(conn)  # root listings of restricted projects depend on roles

    def remove_role(self, user_id: int, project_id: int) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM roles WHERE user_id = ? AND project_id = ?", (user_id, project_id)
            )
            _bump_serial(conn)
        return cursor.rowcount == 1

    def project_roles(self, project_id: int) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT u.name, r.role FROM roles r JOIN users u ON u.id = r.user_id"
            " WHERE r.project_id = ? ORDER BY r.role, u.name",
            (project_id,),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def project_counts(self, project_id: int) -> tuple[int, int, int]:
        """(releases, files, bytes) of a project."""
        row = self.conn.execute(
            "SELECT count(DISTINCT r.id), count(f.id), ifnull(sum(f.size), 0) FROM releases r"
            " LEFT JOIN files f ON f.release_id = r.id WHERE r.project_id = ?",
            (project_id,),
        ).fetchone()
        return row[0], row[1], row[2]

    def add_token(
        self,
        user_id: int,
        digest: str,
        *,
        scope: str,
        projects: list[str],
        allow_ips: list[str],
        note: str,
        expires: str | None,
        now: str,
    ) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO tokens (user_id, digest, scope, projects, allow_ips, note, created,"
                " expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    digest,
                    scope,
                    json.dumps(projects),
                    json.dumps(allow_ips),
                    note,
                    now,
                    expires,
                ),
            )
        return int(cursor.lastrowid or 0)

    def token_by_digest(self, digest: str) -> Token | None:
        row = self.conn.execute(_SELECT_API_KEYS + " WHERE t.digest = ?", (digest,)).fetchone()
        return _token(row) if row else None

    def get_token(self, token_id: int) -> Token | None:
        row = self.conn.execute(_SELECT_API_KEYS + " WHERE t.id = ?", (token_id,)).fetchone()
        return _token(row) if row else None

    def list_tokens(self, user_id: int | None = None) -> list[Token]:
        rows = self.conn.execute(
            _SELECT_API_KEYS + " WHERE ? IS NULL OR t.user_id = ? ORDER BY t.id", (user_id, user_id)
        ).fetchall()
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: int, now: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, token_id)
            )
        return cursor.rowcount == 1

    def replace_token_digest(self, token_id: int, digest: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE tokens SET digest = ? WHERE id = ? AND revoked IS NULL", (digest, token_id)
            )
        return cursor.rowcount == 1

    def touch_token(self, token_id: int, now: str, ip: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET last_used = ?, last_ip = ? WHERE id = ?", (now, ip, token_id)
            )

    def add_allow(self, cidr: str, user_id: int | None, note: str, now: str) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(
                    "INSERT INTO allowlist (user_id, cidr, note, created) VALUES (?, ?, ?, ?)",
                    (user_id, cidr, note, now),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"{cidr} is already on that allowlist") from exc

    def remove_allow(self, cidr: str, user_id: int | None) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM allowlist WHERE cidr = ? AND ifnull(user_id, 0) = ifnull(?, 0)",
                (cidr, user_id),
            )
        return cursor.rowcount == 1

    def allowlist(self, user_id: int | None) -> list[str]:
        """CIDRs of the global list (user_id None) or of one user's list."""
        rows = self.conn.execute(
            "SELECT cidr FROM allowlist WHERE ifnull(user_id, 0) = ifnull(?, 0)", (user_id,)
        ).fetchall()
        return [row[0] for row in rows]

    def list_allow_entries(self) -> list[AllowEntry]:
        rows = self.conn.execute(
            "SELECT a.id, a.cidr, a.note, u.name FROM allowlist a"
            " LEFT JOIN users u ON u.id = a.user_id ORDER BY u.name IS NOT NULL, u.name, a.cidr"
        ).fetchall()
        return [AllowEntry(row[0], row[1], row[2], row[3]) for row in rows]

    def add_audit(self, event: AuditEvent) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO audit (time, ip, user, token_id, action, project, filename, outcome,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.time,
                    event.ip,
                    event.user,
                    event.token_id,
                    event.action,
                    event.project,
                    event.filename,
                    event.outcome,
                    event.detail,
                ),
            )

    def query_audit(
        self,
        *,
        since: str,
        user: str | None = None,
        project: str | None = None,
        action: str | None = None,
        limit: int = 10_000,
        newest_first: bool = False,
    ) -> list[AuditEvent]:
        """Events since `since`, filtered; oldest first, or the latest `limit` newest first
        (the web view)."""
        rows = self.conn.execute(
            "SELECT time, ip, user, token_id, action, project, filename, outcome, detail"
            " FROM audit WHERE time >= ? AND (? IS NULL OR user = ?)"
            " AND (? IS NULL OR project = ?) AND (? IS NULL OR action = ?)"
            " ORDER BY CASE WHEN ? THEN -id ELSE id END LIMIT ?",  # ids grow with time
            (since, user, user, project, project, action, action, newest_first, limit),
        ).fetchall()
        return [AuditEvent(*row) for row in rows]

    def prune_audit(self, before: str) -> int:
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM audit WHERE time < ?", (before,))
            conn.execute("DELETE FROM download_counts WHERE day < substr(?, 1, 10)", (before,))
        return cursor.rowcount

    def add_download_counts(self, day: str, counts: dict[tuple[str, str], int]) -> None:
        """Add per-file download counts for one day; counts maps (project, filename) -> n."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO download_counts (day, filename, project, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (day, filename) DO UPDATE SET count = count + excluded.count",
                [(day, filename, project, n) for (project, filename), n in counts.items()],
            )

    def download_counts(self, since_day: str) -> list[tuple[str, str, str, int]]:
        rows = self.conn.execute(
            "SELECT day, project, filename, count FROM download_counts WHERE day >= ?"
            " ORDER BY day, filename",
            (since_day,),
        ).fetchall()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    # -- reading the index ------------------------------------------------------------------

    def serial(self) -> int:
        """The index-wide change counter; caches compare it instead of re-reading."""
        return self.conn.execute("SELECT serial FROM state WHERE id = 1").fetchone()[0]

    def get_project(self, name: str) -> Project | None:
        row = self.conn.execute(
            "SELECT id, name, display_name, serial, visibility FROM projects WHERE name = ?",
            (name,),
        ).fetchone()
        return _project(row) if row else None

    def project_with_role(
        self, name: str, user_id: int | None
    ) -> tuple[Project | None, str | None]:
        """The project and the user's role in it, in one query (the hot path of every read)."""
        row = self.conn.execute(
            "SELECT p.id, p.name, p.display_name, p.serial, p.visibility, r.role FROM projects p"
            " LEFT JOIN roles r ON r.project_id = p.id AND r.user_id = ? WHERE p.name = ?",
            (user_id, name),
        ).fetchone()
        return (_project(row), row["role"]) if row else (None, None)

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
            (int(everything), viewer_id),
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

    # -- operations (yank, delete, backup, check) --

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
            serial = _bump_serial(conn)
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
            query = _FILE_SELECT + " WHERE r.project_id = ?"
            params: list[object] = [project_id]
            if canonical_version is not None:
                query += " AND r.canonical_version = ?"
                params.append(canonical_version)
            if filename is not None:
                query += " AND f.filename = ?"
                params.append(filename)
            records = [_file(row, project) for row in conn.execute(query, params).fetchall()]
            conn.executemany(
                "INSERT INTO deleted_files (filename, sha256, deleted_at) VALUES (?, ?, ?)"
                " ON CONFLICT (filename) DO UPDATE SET deleted_at = excluded.deleted_at",
                [(record.filename, record.sha256, now) for record in records],
            )
            conn.executemany("DELETE FROM files WHERE id = ?", [(r.id,) for r in records])
            serial = _bump_serial(conn)
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
            _FILE_SELECT.replace("FROM files f", ", p.name AS project FROM files f")
            + " JOIN projects p ON p.id = r.project_id ORDER BY f.id"
        ).fetchall()
        return [_file(row, row["project"]) for row in rows]

    def storage_totals(self) -> tuple[int, int]:
        """(number of files, their total bytes) as recorded; /metrics reads this, not the disk."""
        row = self.conn.execute("SELECT count(*), ifnull(sum(size), 0) FROM files").fetchone()
        return row[0], row[1]

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold SQLite's write lock without writing: no upload can be between publishing its
        file and committing its row meanwhile (ingest publishes inside its transaction)."""
        with self.transaction():
            yield

    def backup_to(self, target: Path) -> None:
        """A consistent online copy: the sqlite3 backup API in one step copies one read
        snapshot while writers go on (WAL)."""
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()

    def make_self_contained(self) -> None:
        """Leave WAL mode so the file alone is the database (backups); closes the connection."""
        self.conn.execute("PRAGMA journal_mode = DELETE")
        self.close()

    # -- web UI and docs --

    def release_infos(
        self, viewer_id: int | None, project_id: int | None = None
    ) -> list[ReleaseInfo]:
        """Releases that have files, with the viewer's role in their project; of one project
        or of all (the caller filters by permissions.can_see)."""
        # Two statements rather than "? IS NULL OR ...": one project's releases are then
        # found by index instead of a scan of every (wide: metadata) release row.
        query = (
            "SELECT r.id, p.name, p.display_name, p.visibility, o.role, r.version,"
            " r.canonical_version, r.summary, r.yanked, r.yanked_reason, r.created,"
            " max(f.upload_time) FROM releases r JOIN projects p ON p.id = r.project_id"
            " JOIN files f ON f.release_id = r.id"
            " LEFT JOIN roles o ON o.project_id = p.id AND o.user_id = ?"
        )
        if project_id is None:
            rows = self.conn.execute(query + " GROUP BY r.id", (viewer_id,)).fetchall()
        else:
            rows = self.conn.execute(
                query + " WHERE r.project_id = ? GROUP BY r.id", (viewer_id, project_id)
            ).fetchall()
        return [ReleaseInfo(*row[:8], bool(row[8]), *row[9:]) for row in rows]

    def release_metadata(self, release_id: int) -> dict[str, str | list[str]]:
        """The parsed core metadata fields stored with a release (README in "description")."""
        row = self.conn.execute(
            "SELECT metadata_json FROM releases WHERE id = ?", (release_id,)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def file_uploaders(self, project_id: int) -> dict[int, str]:
        """File id -> uploader's user name ("" when unknown or deleted)."""
        rows = self.conn.execute(
            "SELECT f.id, ifnull(u.name, '') FROM files f JOIN releases r ON r.id = f.release_id"
            " LEFT JOIN users u ON u.id = f.uploader_id WHERE r.project_id = ?",
            (project_id,),
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def set_admin(self, name: str, is_admin: bool) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE users SET is_admin = ? WHERE name = ?", (int(is_admin), name)
            )
        return cursor.rowcount == 1

    def all_roles(self) -> list[tuple[str, str, str]]:
        """(project, user, role) for every grant."""
        rows = self.conn.execute(
            "SELECT p.name, u.name, r.role FROM roles r JOIN users u ON u.id = r.user_id"
            " JOIN projects p ON p.id = r.project_id ORDER BY p.name, u.name"
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def docs_builds(self, project_id: int) -> list[DocsBuild]:
        """The current docs build of each release of a project that has one."""
        rows = self.conn.execute(_DOCS_SELECT + " WHERE r.project_id = ?", (project_id,)).fetchall()
        return [DocsBuild(*row) for row in rows]

    def all_docs_builds(self) -> list[DocsBuild]:
        """Every current docs build, for backups and integrity checks."""
        rows = self.conn.execute(_DOCS_SELECT + " ORDER BY p.name, r.canonical_version").fetchall()
        return [DocsBuild(*row) for row in rows]

    def set_docs(
        self,
        release_id: int,
        build: str,
        *,
        files: int,
        size: int,
        uploader_id: int | None,
        now: str,
    ) -> str | None:
        """Make `build` the release's current docs (the atomic step of an upload); return
        the build it replaced, whose directory the caller removes."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT build FROM docs WHERE release_id = ?", (release_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO docs (release_id, build, files, size, uploaded, uploader_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (release_id) DO UPDATE SET"
                " build = excluded.build, files = excluded.files, size = excluded.size,"
                " uploaded = excluded.uploaded, uploader_id = excluded.uploader_id",
                (release_id, build, files, size, now, uploader_id),
            )
        return row[0] if row else None


_FILE_SELECT = (
    "SELECT f.id, r.version, f.filename, f.packagetype, f.python_version, f.requires_python,"
    " f.size, f.sha256, f.blake2_256, f.md5, f.metadata_sha256, f.upload_time,"
    " r.yanked, r.yanked_reason"
    " FROM files f JOIN releases r ON r.id = f.release_id"
)

_DOCS_SELECT = (
    "SELECT p.name, r.version, r.canonical_version, d.build, d.files, d.size, d.uploaded,"
    " ifnull(u.name, '') FROM docs d JOIN releases r ON r.id = d.release_id"
    " JOIN projects p ON p.id = r.project_id LEFT JOIN users u ON u.id = d.uploader_id"
)


def _bump_serial(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "UPDATE state SET serial = serial + 1 WHERE id = 1 RETURNING serial"
    ).fetchone()[0]


def _project(row: sqlite3.Row) -> Project:
    return Project(row["id"], row["name"], row["display_name"], row["serial"], row["visibility"])


_SELECT_API_KEYS = (
    "SELECT t.id, t.user_id, t.scope, t.projects, t.allow_ips, t.note, t.created, t.expires,"
    " t.revoked, t.last_used, t.last_ip, u.name AS user_name"
    " FROM tokens t JOIN users u ON u.id = t.user_id"
)


def _allowlists(row: sqlite3.Row) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple((row["global_cidrs"] or "").split()), tuple((row["user_cidrs"] or "").split())


def _token(row: sqlite3.Row, id_column: str = "id") -> Token:
    return Token(
        id=row[id_column],
        user_id=row["user_id"],
        scope=row["scope"],
        projects=tuple(json.loads(row["projects"])),
        allow_ips=tuple(json.loads(row["allow_ips"])),
        note=row["note"],
        created=row["created"],
        expires=row["expires"],
        revoked=row["revoked"],
        last_used=row["last_used"],
        last_ip=row["last_ip"],
        user_name=row["user_name"],
    )


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
