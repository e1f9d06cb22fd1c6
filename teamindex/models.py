"""Records passed between the database layer and everything else (frozen, no sqlite3.Row)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    is_admin: bool


@dataclass(frozen=True)
class Project:
    id: int
    name: str  # normalized
    display_name: str
    serial: int


@dataclass(frozen=True)
class FileRecord:
    """One distribution file as the simple API and downloads need it."""

    id: int
    project: str  # normalized project name
    version: str
    filename: str
    packagetype: str
    python_version: str
    requires_python: str
    size: int
    sha256: str
    blake2_256: str
    md5: str
    metadata_sha256: str | None
    upload_time: str
    yanked: bool
    yanked_reason: str


@dataclass(frozen=True)
class NewFile:
    """Everything an upload or import records about a file that is not yet in the index."""

    project: str
    display_name: str
    version: str
    canonical_version: str
    summary: str
    metadata_json: str
    filename: str
    packagetype: str
    python_version: str
    requires_python: str
    size: int
    sha256: str
    blake2_256: str
    md5: str
    metadata_sha256: str | None
    upload_time: str
    uploader_id: int | None
