"""Hosted documentation in the object store (`--storage s3://...`): docstore.DocsStore's
rules, with builds as objects under `<prefix>docs/<project>/<version>/<build>/`.

An upload is checked and unpacked into the local staging dir exactly as on disk, then each
file is uploaded and verified (size and sha256), then the row switches to the new build
in one transaction (the atomic replacement), then the old build's objects go. A crash
leaves at most objects of a build no row names, which `check` reports."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, cast

from ..clock import utc_stamp
from ..db import Database
from ..models import DocsBuild, ReleaseInfo
from .docstore import DocsStore, Published, _extract, build_files
from .storage.local import digest_file
from .storage.s3 import S3Storage

DOCS = "docs/"


class S3DocsStore(DocsStore):
    """The docs of one index in its bucket; staging stays in the data dir."""

    local = False

    def __init__(self, staging_root: Path, storage: S3Storage) -> None:
        super().__init__(staging_root)
        self.storage = storage
        self.base = storage.prefix + DOCS

    def key(self, *parts: str) -> str:
        return self.base + "/".join(parts)

    def publish(
        self, db: Database, release: ReleaseInfo, zip_path: Path, *, uploader_id: int | None
    ) -> Published:
        staging = self._staging_dir()
        uploaded: list[str] = []
        try:
            files, size = _extract(zip_path, staging, self.limits)
            build = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + _token()
            self.build_dir(release.project, release.canonical_version, build)  # plain names
            for path in build_files(staging):
                key = self.key(
                    release.project,
                    release.canonical_version,
                    build,
                    path.relative_to(staging).as_posix(),
                )
                uploaded.append(key)
                self.storage.put_file(path, key, digest_file(path).sha256)
            previous = db.set_docs(
                release.id,
                build,
                files=files,
                size=size,
                uploader_id=uploader_id,
                now=utc_stamp(),
            )
        except BaseException:
            self._delete_keys(uploaded)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if previous is not None and previous != build:
            self._delete_prefix(self.key(release.project, release.canonical_version, previous, ""))
        return Published(build, files, size)

    def remove(self, project: str, canonical_version: str | None = None) -> None:
        parts = [project] if canonical_version is None else [project, canonical_version]
        self._delete_prefix(self.key(*parts, ""))

    def locate(self, build: DocsBuild, subpath: str) -> Path | None:
        """The key path (relative to the build) of the object a URL path names:
        the object itself, or the index.html under it for a directory."""
        parts = [part for part in subpath.split("/") if part]
        if any(part in {".", ".."} or "\\" in part or "\0" in part for part in parts):
            return None
        self.build_dir(build.project, build.canonical_version, build.build)
        base = PurePosixPath(build.project, build.canonical_version, build.build)
        for candidate in (base.joinpath(*parts), base.joinpath(*parts, "index.html")):
            if candidate == base:
                continue
            with contextlib.suppress(FileNotFoundError):
                self.storage.head(self.base + candidate.as_posix())
                return cast(Path, candidate)
        return None

    def open(self, path: Path) -> IO[bytes]:
        """The bytes of a located docs file."""
        key = self.base + path.as_posix()
        size = int(self.storage.head(key)["ContentLength"])
        return cast(IO[bytes], self.storage.open_key(key, size))

    def build_listing(self, build: DocsBuild) -> list[tuple[str, int]]:
        start = self.key(build.project, build.canonical_version, build.build, "")
        return [(key.removeprefix(start), size) for key, size, _ in self.storage.list_keys(start)]

    def open_build_file(self, build: DocsBuild, relative: str) -> IO[bytes]:
        key = self.key(build.project, build.canonical_version, build.build, relative)
        size = int(self.storage.head(key)["ContentLength"])
        return cast(IO[bytes], self.storage.open_key(key, size))

    def put_build_file(self, build: DocsBuild, relative: str, source: Path) -> None:
        key = self.key(build.project, build.canonical_version, build.build, relative)
        self.storage.put_file(source, key, digest_file(source).sha256)

    def _delete_prefix(self, start: str) -> None:
        self._delete_keys([key for key, _size, _modified in self.storage.list_keys(start)])

    def _delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                self.storage.delete_key(key)


def _token() -> str:
    return hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8]
