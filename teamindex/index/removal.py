"""Deleting projects, releases and files: rows first, in one transaction, then the files.

The reverse of ingest's "files before rows": a row must never point at a missing file, so
the rows go first (one transaction, which also records every filename in deleted_files so
the name can never return with other bytes), and the files are unlinked after the commit.
A release that loses its last file is deleted with it (and its docs row, by cascade), so
its hosted docs directory goes after the commit too. A crash in between leaves only
unreferenced files and directories, which `teamindex check` reports as strays and
`check --repair` quarantines. The CLI and the admin page both delete through delete_dists.
No Flask here.
"""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_version
from packaging.version import Version

from ..clock import utc_now
from ..db import Database
from ..models import FileRecord
from .docstore import DocsStore
from .storage import Store


def file_paths(storage: Store, record: FileRecord) -> list[Path]:
    """The distribution and, when recorded, its PEP 658 metadata file."""
    paths = [storage.file_path(record.project, record.filename)]
    if record.metadata_sha256 is not None:
        paths.append(storage.metadata_path(record.project, record.filename))
    return paths


def _remove_files(db: Database, storage: Store, records: list[FileRecord]) -> None:
    """Unlink the deleted files under the database's write lock, skipping any filename that
    has a row again: an identical re-upload may have put it back since the delete committed
    (issue 10: unlinking its fresh file left a row without a file). Uploads rename and insert
    under the same lock, across processes, so the check and the unlink cannot interleave."""
    with db.transaction():
        for record in records:
            if db.get_file(record.filename) is None:
                storage.remove(*file_paths(storage, record))


def delete_dists(
    db: Database,
    storage: Store,
    docs: DocsStore,
    project: str,
    canonical_version: str | None = None,
    filename: str | None = None,
) -> list[FileRecord]:
    """Delete a whole project, one release, or one file; return the deleted file records.
    After the commit: their files, and the docs of every release that went with them."""
    records = db.delete_files(project, canonical_version, filename, now=utc_now())
    _remove_files(db, storage, records)
    if canonical_version is None and filename is None:
        docs.remove(project)
        return records
    found = db.get_project(project)
    remaining = {r.canonical_version for r in db.release_infos(None, found.id)} if found else set()
    for gone in {canonicalize_version(Version(r.version)) for r in records} - remaining:
        docs.remove(project, gone)
    return records
