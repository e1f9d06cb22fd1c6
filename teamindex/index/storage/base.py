"""The interface every place that keeps distribution files implements (issue 16 step 3).

Two backends: `local.Storage`, the reference (files under the data dir, renamed into
place), and `s3.S3Storage` (objects in a bucket). Both stream an upload into a hashing temp
file on local disk first; `publish` then makes the complete, checked bytes visible under
their name, and only after it returns does the caller commit the row (files before rows).

A stored file is named by a path from `file_path`/`metadata_path`: a real path under the
data dir for the local backend, a relative key path (`<project>/<filename>`) for S3, which
has no meaning on this machine's disk. Code that must touch bytes goes through these
methods, so it works on both; code that needs a real file asks `local` first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO


class StorageUnavailable(OSError):
    """The object store refused or did not answer; nothing was recorded (503, retry)."""


@dataclass(frozen=True)
class StoredObject:
    """One stored file as a listing shows it (`check` compares these with the rows)."""

    path: PurePath  # as file_path() names it
    size: int
    age_seconds: float  # since it was last written


class Store(ABC):
    """Where distribution files and their .metadata live."""

    # True when file_path() names a file on this machine (send_file, X-Accel-Redirect).
    local: bool = True
    tmp_dir: Path

    @abstractmethod
    def ensure_dirs(self) -> None:
        """Make what must exist before the first upload (directories, or check the bucket)."""

    @abstractmethod
    def file_path(self, project: str, filename: str) -> Path:
        """Where a distribution lives. Refuses anything that is not a plain name."""

    @abstractmethod
    def metadata_path(self, project: str, filename: str) -> Path:
        """Where a distribution's PEP 658 .metadata lives (beside it)."""

    @abstractmethod
    def publish(
        self, temp: Path, final: Path, *, sync: bool = True, sha256: str | None = None
    ) -> None:
        """Make a complete temp file visible as `final`, verified, and consume the temp file
        (`sha256`: its digest when the caller knows it, else it is computed)."""

    def stage(self, temp: Path, sha256: str) -> None:  # noqa: B027 - a hook, local: none
        """Before the write lock: send a complete temp file where publish() can place it
        quickly. Object stores upload it to a staging key here, so that the database's
        write lock is held for a server-side copy, not for the upload. Local disk: nothing
        to do (publish is a rename)."""

    def unstage(self, temp: Path) -> None:  # noqa: B027 - a hook, local: none
        """Drop what stage() sent for a temp file that is not published after all."""

    @abstractmethod
    def remove(self, *paths: Path) -> None:
        """Remove stored files; a missing one is no error."""

    @abstractmethod
    def exists(self, path: Path) -> bool:
        """Whether a stored file is there."""

    @abstractmethod
    def sync_published(self, paths: Iterable[Path]) -> None:
        """Make a batch of publish(sync=False) durable before the caller's COMMIT."""

    @abstractmethod
    def open_read(self, path: Path) -> IO[bytes]:
        """The stored bytes to read (FileNotFoundError for a missing file)."""

    @abstractmethod
    def objects(self) -> Iterator[StoredObject]:
        """Every stored file, for `check`: the listing, never the rows."""

    def download_url(self, path: Path, expiry: int) -> str:
        """A URL that lets its holder fetch this one file for `expiry` seconds (object
        stores: a presigned URL). Local files have none: the index sends them itself."""
        raise NotImplementedError("local files are sent by the index itself")
