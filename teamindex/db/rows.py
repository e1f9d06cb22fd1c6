"""Shared SELECT prefixes and row -> model conversions (rows never leave the package).

A row is a sqlite3.Row or the PostgreSQL engine's Row: both read by position and by name."""

from __future__ import annotations

import json
from typing import Any

from ..models import (
    FileRecord,
    Project,
    Token,
    User,
)
from .core import Conn

FILE_SELECT = (
    "SELECT f.id, r.version, f.filename, f.packagetype, f.python_version, f.requires_python,"
    " f.size, f.sha256, f.blake2_256, f.md5, f.metadata_sha256, f.upload_time,"
    " r.yanked, r.yanked_reason"
    " FROM files f JOIN releases r ON r.id = f.release_id"
)

DOCS_SELECT = (
    "SELECT p.name, r.version, r.canonical_version, d.build, d.files, d.size, d.uploaded,"
    " coalesce(u.name, '') FROM docs d JOIN releases r ON r.id = d.release_id"
    " JOIN projects p ON p.id = r.project_id LEFT JOIN users u ON u.id = d.uploader_id"
)


def bump_serial(conn: Conn) -> int:
    return conn.execute(
        "UPDATE state SET serial = serial + 1 WHERE id = 1 RETURNING serial"
    ).fetchone()[0]


def project_from(row: Any) -> Project:
    return Project(row["id"], row["name"], row["display_name"], row["serial"], row["visibility"])


SELECT_API_KEYS = (
    "SELECT t.id, t.user_id, t.scope, t.projects, t.allow_ips, t.note, t.created, t.expires,"
    " t.revoked, t.last_used, t.last_ip, u.name AS user_name"
    " FROM tokens t JOIN users u ON u.id = t.user_id"
)


def allowlists_from(row: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple((row["global_cidrs"] or "").split()), tuple((row["user_cidrs"] or "").split())


def token_from(row: Any, id_column: str = "id") -> Token:
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


def user_from(row: Any) -> User:
    return User(row["id"], row["name"], row["password_hash"], bool(row["is_admin"]))


def file_from(row: Any, project: str) -> FileRecord:
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
