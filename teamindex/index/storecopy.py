"""Verified copies between storages (disk to bucket, bucket to disk, bucket to bucket):
backup and restore of an S3 store, and `migrate-store --storage s3://...`.

Object by object: each file the rows list is read from the source into a hashing temp
file of the target (its tmp/ on local disk), its size and sha256 are compared with the
row (the .metadata twin's with metadata_sha256), and only then published into the target
(for S3: uploaded and HEAD-checked, base.Store.publish). A file whose bytes differ from
its row stops the copy (StoreCopyError): the source is damaged, and a copy must not carry
that on. Docs builds are checked against their row's file count and bytes (docs have no
recorded hashes). No Flask here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..models import DocsBuild, FileRecord
from .docstore import DocsStore
from .progress import Progress
from .storage import Store

CHUNK = 1 << 20


class StoreCopyError(Exception):
    """A file's bytes differ from its row; str() names it."""


@dataclass
class StoreCopyReport:
    files: int = 0  # distribution files (their .metadata twins are counted apart)
    bytes: int = 0
    metadata: int = 0
    missing: list[str] = field(default_factory=list)  # listed by a row, absent at the source
    docs: int = 0
    docs_files: int = 0
    docs_bytes: int = 0
    docs_problems: list[str] = field(default_factory=list)


def copy_files(
    records: list[FileRecord],
    source: Store,
    target: Store,
    progress: Progress | None = None,
) -> StoreCopyReport:
    """Copy every row's file and .metadata from `source` to `target`, each checked
    against its row's size and sha256 before it is published there."""
    progress = progress or Progress("copy", None)
    report = StoreCopyReport()
    target.ensure_dirs()
    for record in records:
        wanted: list[tuple[str, int | None, str]] = [(record.filename, record.size, record.sha256)]
        if record.metadata_sha256 is not None:
            wanted.append((record.filename + ".metadata", None, record.metadata_sha256))
        for number, (name, size, sha256) in enumerate(wanted):
            src = source.file_path(record.project, name)
            if _copy_one(source, src, target, target.file_path(record.project, name), size, sha256):
                report.metadata += bool(number)
            else:
                report.missing.append(str(src))
        report.files += 1
        report.bytes += record.size
        progress.advance(1, record.size)
    return report


def _copy_one(
    source: Store, src: Path, target: Store, dst: Path, size: int | None, sha256: str
) -> bool:
    """One verified copy; False when the source lacks the file."""
    try:
        reader = source.open_read(src)
    except FileNotFoundError:
        return False
    temp = target.new_temp()
    try:
        with reader:
            shutil.copyfileobj(reader, temp, CHUNK)
        digests = temp.digests()
        temp.finish()
        temp.close()
        if (size is not None and digests.size != size) or digests.sha256 != sha256:
            raise StoreCopyError(
                f"{src}: {digests.size} bytes with sha256 {digests.sha256}, the database "
                f"says {size if size is not None else 'any size'} with {sha256}; the source "
                "is damaged"
            )
        target.publish(temp.path, dst, sha256=sha256)
    except BaseException:
        temp.discard()
        raise
    return True


def copy_docs(
    builds: list[DocsBuild],
    source: DocsStore,
    target: DocsStore,
    report: StoreCopyReport,
    progress: Progress | None = None,
) -> None:
    """Copy each build's files; a build whose copy does not match its row (count and
    bytes) is named in report.docs_problems."""
    progress = progress or Progress("copy", None)
    staging = Path(tempfile.mkdtemp(prefix="docs-copy-"))
    try:
        for build in builds:
            files = size = 0
            for relative, _size in source.build_listing(build):
                local = staging / "file"
                try:
                    with source.open_build_file(build, relative) as src, local.open("wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                except FileNotFoundError:
                    continue  # removed meanwhile (the build was replaced): counted below
                files += 1
                size += local.stat().st_size
                target.put_build_file(build, relative, local)
            progress.advance(build.files, build.size)
            if (files, size) != (build.files, build.size):
                report.docs_problems.append(
                    f"{build.project} {build.version} (docs build {build.build}: {files} files,"
                    f" {size} bytes; the database says {build.files} files, {build.size} bytes)"
                )
                continue
            report.docs += 1
            report.docs_files += files
            report.docs_bytes += size
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
