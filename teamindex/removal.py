"""Deleting projects, releases and files: rows first, in one transaction, then the files.

The reverse of ingest's "files before rows": a row must never point at a missing file, so
the rows go first (one transaction, which also records every filename in deleted_files so
the name can never return with other bytes), and the files are unlinked after the commit.
A crash in between leaves only unreferenced files, which `teamindex check` reports as
strays and `check --repair` quarantines. No Flask here.
"""

from __future__ import annotations

from pathlib import Path

from .db import Database
from .ingest import utc_now
from .models import FileRecord
from .storage import Storage


def file_paths(storage: Storage, record: FileRecord) -> list[Path]:
    """The distribution and, when recorded, its PEP 658 metadata file."""
    paths = [storage.file_path(record.project, record.filename)]
    if record.metadata_sha256 is not None:
        paths.append(storage.metadata_path(record.project, record.filename))
    return paths


def delete_dists(
    db: Database,
    storage: Storage,
    project: str,
    canonical_version: str | None = None,
    filename: str | None = None,
) -> list[FileRecord]:
    """Delete a whole project, one release, or one file; return the deleted file records."""
    records = db.delete_files(project, canonical_version, filename, now=utc_now())
    for record in records:
        storage.remove(*file_paths(storage, record))
    return records
