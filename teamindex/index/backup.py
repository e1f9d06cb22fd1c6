"""Online backup and restore of a data dir. No Flask here.

A backup is a directory shaped like a data dir: `teamindex.sqlite3`, `packages/` and, when
there are hosted docs, `docs/`. The database is copied first with SQLite's backup API (one
consistent snapshot while the server keeps writing); then exactly the files that snapshot
lists are copied, and the docs builds it names (not debris in docs/.incoming, not builds
without a row). Files never change after they are published (a filename holds one content
forever; a docs re-upload makes a new build directory), so copying them after the snapshot
is consistent, and a hard link is as good as a copy when DEST is on the same filesystem (it
protects against deletion and mistakes, not against losing the disk). A docs build is
checked against the file count and byte total of its row (docs have no recorded hashes).
The database lands under its final name last, so a directory holding `teamindex.sqlite3`
is a complete backup.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..db import Database
from ..models import DocsBuild, FileRecord
from .docstore import DOCS_DIR, DocsStore, build_files
from .progress import Progress
from .removal import file_paths
from .storage import Storage, Store, fsync_dir, fsync_path, make_private
from .storecopy import StoreCopyError, StoreCopyReport, copy_docs, copy_files

DB_NAME = "teamindex.sqlite3"
PART = ".part"


class BackupError(Exception):
    """The backup or restore cannot be made; str() says why."""


@dataclass
class CopyReport:
    files: int = 0  # distribution files (their .metadata twins are counted apart)
    bytes: int = 0
    linked: int = 0  # distribution files hard-linked ...
    copied: int = 0  # ... and copied
    metadata: int = 0  # PEP 658 .metadata files that came along
    missing: list[str] = field(default_factory=list)
    docs: int = 0  # docs builds
    docs_files: int = 0
    docs_bytes: int = 0
    docs_linked: int = 0  # files of docs builds hard-linked ...
    docs_copied: int = 0  # ... and copied
    # Builds a backup made before docs were backed up lacks (restore goes on without them).
    docs_absent: list[str] = field(default_factory=list)


def _empty_or_absent(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def _copy(source: Path, target: Path) -> None:
    """Copy through a temp name, fsync, rename: a target that exists is complete."""
    part = target.with_name(target.name + PART)
    try:
        with source.open("rb") as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise


def _link_or_copy(source: Path, target: Path, *, link: bool) -> bool:
    """Hard-link when allowed and possible; True if linked."""
    if link:
        try:
            os.link(source, target)
            return True
        except OSError as exc:
            # EXDEV: another filesystem; EPERM/ENOTSUP: the filesystem has no hard links.
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
    _copy(source, target)
    return False


def _copy_files(
    records: list[FileRecord],
    source: Storage,
    target: Storage,
    progress: Progress,
    *,
    link: bool,
    verify: bool,
) -> CopyReport:
    report = CopyReport()
    touched: set[Path] = set()
    for record in records:
        pairs = zip(file_paths(source, record), file_paths(target, record), strict=True)
        for number, (src, dst) in enumerate(pairs):
            dst.parent.mkdir(parents=True, exist_ok=True)
            touched.add(dst.parent)
            try:
                linked = _link_or_copy(src, dst, link=link)
            except FileNotFoundError:
                # Deleted after the snapshot (or damaged before it): the copy is incomplete.
                report.missing.append(str(src))
                continue
            if number:  # the .metadata twin
                report.metadata += 1
            else:
                report.linked += linked
                report.copied += not linked
        report.files += 1
        report.bytes += record.size
        if verify:
            _verify(target.file_path(record.project, record.filename), record, report)
        progress.advance(1, record.size)
    for directory in sorted(touched):
        fsync_dir(directory)
    return report


def _verify(path: Path, record: FileRecord, report: CopyReport) -> None:
    if str(path) in report.missing or not path.exists():
        return
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != record.sha256:
        raise BackupError(f"{path}: sha256 differs from the database; the source is damaged")


def _copy_docs(
    builds: list[DocsBuild],
    source: DocsStore,
    target: DocsStore,
    report: CopyReport,
    progress: Progress,
    *,
    link: bool,
) -> list[str]:
    """Copy each build's tree; return the builds whose copy does not match their row
    (vanished or damaged), described for the operator."""
    problems = []
    touched: set[Path] = set()
    for build in builds:
        src = source.build_dir(build.project, build.canonical_version, build.build)
        dst = target.build_dir(build.project, build.canonical_version, build.build)
        files = size = linked = 0
        for path in build_files(src):
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            touched.update(parent for parent in out.parents if parent.is_relative_to(target.root))
            try:
                linked += _link_or_copy(path, out, link=link)
            except FileNotFoundError:
                continue  # removed meanwhile (the build was replaced): counted below
            files += 1
            size += out.stat().st_size
        progress.advance(build.files, build.size)
        report.docs_linked += linked
        report.docs_copied += files - linked
        if (files, size) != (build.files, build.size):
            problems.append(
                f"{src} (docs build: {files} files, {size} bytes; "
                f"the database says {build.files} files, {build.size} bytes)"
            )
            continue
        report.docs += 1
        report.docs_files += files
        report.docs_bytes += size
    for directory in sorted(touched, key=lambda path: len(path.parts), reverse=True):
        fsync_dir(directory)
    return problems


def _contents_of(part: Path) -> tuple[list[FileRecord], list[DocsBuild]]:
    """The files and docs builds a copied database lists; leaves it self-contained."""
    copied = Database(part)
    try:
        records = copied.all_files()
        builds = copied.all_docs_builds()
        copied.make_self_contained()
    finally:
        copied.close()
    return records, builds


def _start(progress: Progress, records: list[FileRecord], builds: list[DocsBuild]) -> None:
    """Totals for the progress line: package files and docs files, and their bytes."""
    progress.start(
        len(records) + sum(build.files for build in builds),
        sum(record.size for record in records) + sum(build.size for build in builds),
    )


def backup(
    db: Database,
    storage: Store,
    docs: DocsStore,
    dest: Path,
    *,
    link: bool = True,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy a live data dir (its package files and docs builds) to *dest* (which must be
    empty or absent)."""
    progress = progress or Progress("backup", None)
    if not _empty_or_absent(dest):
        raise BackupError(f"{dest} is not empty; back up into a new directory")
    make_private(dest)  # password hashes inside: owner only, whatever the umask
    part = dest / (DB_NAME + PART)
    db.backup_to(part)
    os.chmod(part, 0o600)
    records, builds = _contents_of(part)
    _start(progress, records, builds)
    if storage.local:
        target = Storage(dest / "packages", dest / "tmp")
        report = _copy_files(records, storage, target, progress, link=link, verify=False)
        report.missing += _copy_docs(
            builds, docs, DocsStore.in_data_dir(dest), report, progress, link=link
        )
    else:
        report = _from_store(records, builds, storage, docs, dest, progress)
    progress.finish()
    fsync_path(part)
    os.replace(part, dest / DB_NAME)
    fsync_dir(dest)
    return report


def _from_store(
    records: list[FileRecord],
    builds: list[DocsBuild],
    storage: Store,
    docs: DocsStore,
    dest: Path,
    progress: Progress,
) -> CopyReport:
    """An object store's files and docs copied into the backup directory, each file's
    size and sha256 checked against the snapshot's rows (storecopy)."""
    target = Storage(dest / "packages", dest / "tmp")
    try:
        copied = copy_files(records, storage, target, progress)
        copy_docs(builds, docs, DocsStore.in_data_dir(dest), copied, progress)
    except StoreCopyError as exc:
        raise BackupError(str(exc)) from None
    finally:
        target.owner.release()
        shutil.rmtree(dest / "tmp", ignore_errors=True)
    return _report_of(copied)


def _report_of(copied: StoreCopyReport) -> CopyReport:
    return CopyReport(
        files=copied.files,
        bytes=copied.bytes,
        copied=copied.files - len(copied.missing),
        metadata=copied.metadata,
        missing=copied.missing + copied.docs_problems,
        docs=copied.docs,
        docs_files=copied.docs_files,
        docs_bytes=copied.docs_bytes,
        docs_copied=copied.docs_files,
    )


def _into_store(
    records: list[FileRecord],
    builds: list[DocsBuild],
    source: Path,
    storage: Store,
    docs: DocsStore,
    progress: Progress,
) -> CopyReport:
    """A backup's files and docs copied into the configured object store, verified."""
    if next(iter(storage.objects()), None) is not None:
        raise BackupError("the storage already holds files; restore into an empty one")
    backed_up = Storage(source / "packages", source / "tmp")
    try:
        copied = copy_files(records, backed_up, storage, progress)
        copy_docs(builds, DocsStore.in_data_dir(source), docs, copied, progress)
    except StoreCopyError as exc:
        raise BackupError(str(exc)) from None
    if copied.missing:
        raise BackupError(
            f"the backup lacks {len(copied.missing)} file(s), e.g. {copied.missing[0]}"
        )
    if copied.docs_problems:
        raise BackupError(f"a docs build in the backup is incomplete: {copied.docs_problems[0]}")
    return _report_of(copied)


def restore(
    source: Path,
    data_dir: Path,
    *,
    progress: Progress | None = None,
    storage: Store | None = None,
    docs: DocsStore | None = None,
) -> CopyReport:
    """Copy a backup into an empty data dir, verifying every file's sha256 (and each docs
    build's file count and size) on the way; the files go to `storage` and `docs` when
    they are an object store's (the data dir keeps the database)."""
    progress = progress or Progress("restore", None)
    if not (source / DB_NAME).is_file():
        raise BackupError(f"{source} holds no {DB_NAME}; not a teamindex backup")
    if not _empty_or_absent(data_dir):
        raise BackupError(f"{data_dir} is not empty; restore into an empty data dir")
    if storage is not None and not storage.local:
        assert docs is not None
        make_private(data_dir)
        part = data_dir / (DB_NAME + PART)
        _copy(source / DB_NAME, part)
        os.chmod(part, 0o600)
        records, builds = _contents_of(part)
        _start(progress, records, builds)
        try:
            report = _into_store(records, builds, source, storage, docs, progress)
        except BaseException:
            part.unlink()
            raise
        progress.finish()
        fsync_path(part)
        os.replace(part, data_dir / DB_NAME)
        fsync_dir(data_dir)
        return report
    make_private(data_dir)
    part = data_dir / (DB_NAME + PART)
    _copy(source / DB_NAME, part)
    os.chmod(part, 0o600)
    records, builds = _contents_of(part)
    docs_absent = bool(builds) and not (source / DOCS_DIR).is_dir()
    _start(progress, records, [] if docs_absent else builds)
    target = Storage(data_dir / "packages", data_dir / "tmp")
    target.ensure_dirs()
    backed_up = Storage(source / "packages", source / "tmp")
    report = _copy_files(records, backed_up, target, progress, link=False, verify=True)
    if report.missing:
        raise BackupError(
            f"the backup lacks {len(report.missing)} file(s), e.g. {report.missing[0]}"
        )
    if docs_absent:
        report.docs_absent = [f"{b.project} {b.version}" for b in builds]
    else:
        problems = _copy_docs(
            builds,
            DocsStore.in_data_dir(source),
            DocsStore.in_data_dir(data_dir),
            report,
            progress,
            link=False,
        )
        if problems:
            raise BackupError(f"a docs build in the backup is incomplete: {problems[0]}")
    progress.finish()
    fsync_path(part)
    os.replace(part, data_dir / DB_NAME)
    fsync_dir(data_dir)
    return report
