"""The files half of `teamindex migrate-store --storage s3://...`: a data dir's packages/
and docs/ into the bucket (or, with --reverse, the bucket's back into the data dir).

Object by object through storecopy (each file checked against its row's size and sha256
before it is published; docs builds against their row's count and bytes), before the
caller moves the rows: a row never arrives ahead of its object. A target that already
holds files is refused before anything is copied, and a copy that fails takes back what
it had put there, so the same command can simply run again. No Flask here.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import Settings
from ..db import Database
from ..models import DocsBuild, FileRecord
from .docsbackends import open_docs
from .docstore import DocsStore
from .progress import Progress
from .storage import Storage, Store, open_storage
from .storecopy import StoreCopyError, StoreCopyReport, copy_docs, copy_files


class StoreMigrateError(Exception):
    """The files cannot be moved (a non-empty target, a damaged or incomplete source)."""


@dataclass
class Sides:
    """Where the files come from and go to, for one direction."""

    source: Store
    target: Store
    source_docs: DocsStore
    target_docs: DocsStore
    target_name: str


def _sides(settings: Settings, *, reverse: bool) -> Sides:
    if not settings.storage:
        raise StoreMigrateError("--storage names no object store (s3://bucket/prefix)")
    local = Storage(settings.packages_dir, settings.tmp_dir)
    remote = open_storage(settings)
    local_docs = DocsStore.in_data_dir(settings.data_dir)
    remote_docs = open_docs(settings.data_dir, remote)
    if reverse:
        return Sides(remote, local, remote_docs, local_docs, str(settings.data_dir))
    return Sides(local, remote, local_docs, remote_docs, settings.storage)


def _holds_files(store: Store, docs: DocsStore) -> bool:
    """Anything in the target: a distribution file or a docs file."""
    if next(iter(store.objects()), None) is not None:
        return True
    if isinstance(store, Storage):
        return docs.root.is_dir() and any(path.is_file() for path in docs.root.rglob("*"))
    from .storage.s3 import S3Storage  # boto3 only when S3 is configured

    assert isinstance(store, S3Storage)
    return next(iter(store.list_keys(store.prefix)), None) is not None


@contextlib.contextmanager
def migrated_files(
    source_db: Database, settings: Settings, *, reverse: bool, progress: Progress | None = None
) -> Iterator[StoreCopyReport]:
    """Copy every file and docs build that `source_db` lists into the other storage,
    verified, then run the with-block (the rows' copy). Raises StoreMigrateError; when
    the copy or the block fails, the target is emptied again."""
    sides = _sides(settings, reverse=reverse)
    try:
        sides.target.ensure_dirs()
        if _holds_files(sides.target, sides.target_docs):
            raise StoreMigrateError(
                f"the target storage {sides.target_name} already holds files; "
                "migrate-store copies into an empty one only"
            )
        records, builds = source_db.all_files(), source_db.all_docs_builds()
        projects = sorted({r.project for r in records} | {b.project for b in builds})
        try:
            yield _copy(records, builds, sides, progress)
        except BaseException:
            _take_back(sides, projects)
            raise
    finally:
        for store in (sides.source, sides.target):
            owner = getattr(store, "owner", None)
            if owner is not None:
                owner.release()


def _copy(
    records: list[FileRecord], builds: list[DocsBuild], sides: Sides, progress: Progress | None
) -> StoreCopyReport:
    try:
        report = copy_files(records, sides.source, sides.target, progress)
        copy_docs(builds, sides.source_docs, sides.target_docs, report, progress)
    except StoreCopyError as exc:
        raise StoreMigrateError(str(exc)) from None
    if report.missing:
        raise StoreMigrateError(
            f"the source lacks {len(report.missing)} file(s) its rows list, "
            f"e.g. {report.missing[0]}"
        )
    if report.docs_problems:
        raise StoreMigrateError(f"a docs build does not match its row: {report.docs_problems[0]}")
    return report


def _take_back(sides: Sides, projects: list[str]) -> None:
    """Remove what a failed copy put in the (before: empty) target."""
    if isinstance(sides.target, Storage):
        shutil.rmtree(sides.target.packages_dir, ignore_errors=True)
    else:
        with contextlib.suppress(Exception):
            sides.target.remove(*(obj.path for obj in sides.target.objects()))
    for project in projects:
        with contextlib.suppress(Exception):
            sides.target_docs.remove(project)
