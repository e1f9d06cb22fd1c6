"""Hosted documentation on disk: unpack a checked zip, publish it atomically, find files.

Layout: data/docs/<project>/<canonical version>/<build>/ holds one build; the `docs` row of
the release names the current build. An upload unpacks into data/docs/.incoming/, renames
the finished tree into place (same filesystem: one rename), then switches the row in one
transaction: that commit is the atomic replacement, so a reader sees the old build or the
new one, never a mix. The old build's directory is removed after the commit. Files before
rows, as for distributions: a crash leaves at most an unreferenced directory. No Flask here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from ..clock import utc_stamp
from ..db import Database
from ..models import DocsBuild, ReleaseInfo
from .dists import MAX_CENTRAL_DIRECTORY_BYTES, zip_directory_size
from .docs import DEFAULT_LIMITS, DocsError, DocsLimits, ZipEntry, plan_extraction
from .storage import fsync_dir

DOCS_DIR = "docs"  # under the data dir
INCOMING = ".incoming"
STALE_INCOMING_SECONDS = 24 * 3600  # leftovers of a crashed upload
CHUNK = 1 << 16


@dataclass(frozen=True)
class Published:
    build: str
    files: int
    size: int


class DocsStore:
    """The docs tree of one data dir (docstore_s3.S3DocsStore: in the object store)."""

    local = True  # locate() names a file on this machine

    def __init__(self, root: Path, limits: DocsLimits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DocsStore:
        return cls(data_dir / DOCS_DIR)

    def open(self, path: Path) -> IO[bytes]:
        """The bytes of a file locate() found."""
        return path.open("rb")

    # A build's files by relative name, for verified copies between stores (storecopy).
    def build_listing(self, build: DocsBuild) -> list[tuple[str, int]]:
        base = self.build_dir(build.project, build.canonical_version, build.build)
        return [(p.relative_to(base).as_posix(), p.stat().st_size) for p in build_files(base)]

    def open_build_file(self, build: DocsBuild, relative: str) -> IO[bytes]:
        base = self.build_dir(build.project, build.canonical_version, build.build)
        return base.joinpath(*relative.split("/")).open("rb")

    def put_build_file(self, build: DocsBuild, relative: str, source: Path) -> None:
        """Place a copied file of a build (temp name, fsync, rename)."""
        base = self.build_dir(build.project, build.canonical_version, build.build)
        parts = relative.split("/")
        if any(part in {"", ".", ".."} or "\\" in part for part in parts):
            raise ValueError(f"not a plain relative path: {relative!r}")
        target = base.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        shutil.copyfile(source, part)
        with part.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(part, target)
        fsync_dir(target.parent)

    def build_dir(self, project: str, canonical_version: str, build: str) -> Path:
        for part in (project, canonical_version, build):
            if not part or part.startswith(".") or any(c in part for c in "/\\\0"):
                raise ValueError(f"not a plain name: {part!r}")
        return self.root / project / canonical_version / build

    def publish(
        self, db: Database, release: ReleaseInfo, zip_path: Path, *, uploader_id: int | None
    ) -> Published:
        """Check and unpack the zip, then make it the release's current docs."""
        staging = self._staging_dir()
        try:
            files, size = _extract(zip_path, staging, self.limits)
            build = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(4)
            final = self.build_dir(release.project, release.canonical_version, build)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(final.parent)
        try:
            previous = db.set_docs(
                release.id,
                build,
                files=files,
                size=size,
                uploader_id=uploader_id,
                now=utc_stamp(),
            )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        if previous is not None and previous != build:
            shutil.rmtree(final.parent / previous, ignore_errors=True)
        return Published(build, files, size)

    def remove(self, project: str, canonical_version: str | None = None) -> None:
        """Remove the docs directories of a deleted project or release."""
        target = self.root / project
        if canonical_version is not None:
            target = target / canonical_version
        if target.resolve().is_relative_to(self.root.resolve()) and target != self.root:
            shutil.rmtree(target, ignore_errors=True)

    def locate(self, build: DocsBuild, subpath: str) -> Path | None:
        """The file a URL path inside a build names (index.html for a directory), or None
        for anything missing or not a plain relative path."""
        parts = [part for part in subpath.split("/") if part]
        if any(part in {".", ".."} or "\\" in part or "\0" in part for part in parts):
            return None
        base = self.build_dir(build.project, build.canonical_version, build.build)
        target = base.joinpath(*parts)
        if target.is_dir():
            target = target / "index.html"
        return target if target.is_file() else None

    def _staging_dir(self) -> Path:
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for leftover in incoming.iterdir():
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > STALE_INCOMING_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=incoming, prefix="docs-"))


def build_files(directory: Path) -> list[Path]:
    """The regular files of a build directory (extraction makes nothing else), sorted;
    empty when it does not exist. Symbolic links are not followed or listed."""
    found = []
    for base, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return sorted(found)


def _extract(zip_path: Path, target: Path, limits: DocsLimits) -> tuple[int, int]:
    """Unpack the planned members into `target`; returns (files, bytes)."""
    written = 0
    try:
        # Count before zipfile reads the whole central directory (a million-entry bomb).
        entries, directory_bytes = zip_directory_size(zip_path)
        if entries > limits.max_entries:
            raise DocsError(f"{entries} entries; the limit is {limits.max_entries}")
        if directory_bytes > MAX_CENTRAL_DIRECTORY_BYTES:
            raise DocsError(
                f"central directory of {directory_bytes} bytes; "
                f"the limit is {MAX_CENTRAL_DIRECTORY_BYTES}"
            )
        with zipfile.ZipFile(zip_path) as archive:
            members = plan_extraction(
                [ZipEntry.from_zipinfo(info) for info in archive.infolist()], limits
            )
            for member in members:
                destination = target.joinpath(*member.target.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member.name) as source, destination.open("xb") as sink:
                    copied = 0
                    while chunk := source.read(CHUNK):
                        copied += len(chunk)
                        written += len(chunk)
                        # The header's size bounds what zipfile returns; count anyway.
                        if copied > member.size or written > limits.max_total_bytes:
                            raise DocsError(f"{member.name!r} is larger than its header says")
                        sink.write(chunk)
                    sink.flush()
                    os.fsync(sink.fileno())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DocsError(f"not a valid zip file: {exc}") from None
    except (RuntimeError, zlib.error) as exc:  # CRC errors, corrupt deflate data
        raise DocsError(f"damaged zip file: {exc}") from None
    for directory in sorted({p for p in target.rglob("*") if p.is_dir()}, reverse=True):
        fsync_dir(directory)
    fsync_dir(target)
    return len(members), written
