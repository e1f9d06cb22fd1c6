"""Package files on disk, the reference storage backend (base.Store): stream to a temp file
while hashing, fsync, rename. No Flask here. The temp files serve the S3 backend too.

Layout under the data dir:
    packages/<normalized-project>/<filename>            the distribution
    packages/<normalized-project>/<filename>.metadata   its PEP 658 core metadata (wheels)
    tmp/                                                uploads in flight (same filesystem)

Paths are only ever built from a normalized project name and a filename that `dists`
has already parsed, and `file_path` checks that again, so no request can name a path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..inflight import TempOwner
from .base import Store, StoredObject

METADATA_SUFFIX = ".metadata"


class StorageError(OSError):
    """The disk refused a write (full, read-only, permissions)."""


@dataclass(frozen=True)
class Digests:
    """Hex digests of a file's bytes, as uploads and PEP 503 pages name them."""

    size: int
    sha256: str
    blake2_256: str
    md5: str


# Hashing three digests costs more than writing the bytes (md5 ~700 MiB/s, blake2b ~840,
# sha256 ~1,500 here). hashlib releases the GIL on large updates, so past this size the
# md5 and blake2 updates move to a helper thread and run beside the sha256 and the write.
PARALLEL_HASHING_AFTER = 4 << 20
HELPER_QUEUE_CHUNKS = 32  # werkzeug writes 64 KiB chunks: at most ~2 MiB waiting
# The helper hashes 2 MiB in milliseconds; a wait this long means it is stuck, and the
# request fails (HashingStalled) instead of holding a server thread forever.
HASH_WAIT_SECONDS = 30.0


class HashingStalled(RuntimeError):
    """The hashing helper did not keep up within HASH_WAIT_SECONDS; the upload fails."""


class _HashHelper:
    """A thread that applies the same chunks, in order, to some hash objects.

    It lives until stop(); sync() waits for the chunks fed so far without stopping it, so
    the owner may read digests and go on writing (issue 10: a docs upload asked for the
    size after every chunk, which used to stop the thread, and the next writes then waited
    forever on the full queue). Every wait is bounded by HASH_WAIT_SECONDS.
    """

    def __init__(self, *hashes: Any) -> None:
        self._hashes = hashes
        # Bounded: when hashing falls behind, the writer waits instead of queueing the
        # whole upload in memory (unbounded, a 200 MiB upload grew the server by 93 MB).
        self._items: queue.Queue[bytes | threading.Event | None] = queue.Queue(
            maxsize=HELPER_QUEUE_CHUNKS
        )
        self._stopped = False
        self._stalled = False  # stopped while still busy: its digests are not final
        self._thread = threading.Thread(target=self._run, name="upload-hashing", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        if self._stopped:
            raise ValueError("hashing helper already stopped")
        self._put(bytes(data))  # a private copy: the caller may reuse its buffer

    def sync(self) -> None:
        """Wait until every chunk fed so far is hashed; the helper keeps running."""
        if self._stalled:
            raise HashingStalled("hashing did not finish")
        if self._stopped:
            return
        done = threading.Event()
        self._put(done)
        if not done.wait(HASH_WAIT_SECONDS):
            self._stalled = True
            raise HashingStalled(f"hashing did not finish within {HASH_WAIT_SECONDS:g} s")

    def stop(self) -> None:
        """Hash what was fed and end the thread (idempotent). A helper that already
        stalled is abandoned at once (a daemon thread; the upload has failed anyway)."""
        if self._stopped:
            return
        self._stopped = True
        if self._stalled:
            return
        self._put(None)
        self._thread.join(HASH_WAIT_SECONDS)
        if self._thread.is_alive():
            self._stalled = True
            raise HashingStalled(f"hashing did not finish within {HASH_WAIT_SECONDS:g} s")

    def _put(self, item: bytes | threading.Event | None) -> None:
        try:
            self._items.put(item, timeout=HASH_WAIT_SECONDS)
        except queue.Full:
            self._stalled = True
            raise HashingStalled(
                f"hashing fell behind for more than {HASH_WAIT_SECONDS:g} s"
            ) from None

    def _run(self) -> None:
        while (item := self._items.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            for digest in self._hashes:
                digest.update(item)


class HashingTempFile:
    """A writable temp file in the data dir that hashes every byte written to it.

    Werkzeug's multipart parser streams each file part into the object returned by the
    request's stream factory, so an upload is hashed in the same pass that stores it.
    Any order of calls is safe: write after digests(), digests() twice, close or discard
    before or after digests(), mid-stream or twice. Writing after close raises ValueError.
    """

    def __init__(self, directory: Path, prefix: str = "upload-") -> None:
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        except FileNotFoundError:  # removed meanwhile (a mkdir per file cost an import ~2%)
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self._sha256 = hashlib.sha256()
        self._blake2 = hashlib.blake2b(digest_size=32)
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0
        self._helper: _HashHelper | None = None

    @property
    def size(self) -> int:
        """Bytes written so far (no waiting for the hashes)."""
        return self._size

    def write(self, data: bytes) -> int:
        if self._file.closed:
            raise ValueError("write to a closed HashingTempFile")
        self._sha256.update(data)
        if self._helper is not None:
            self._helper.feed(data)
        else:
            self._blake2.update(data)
            self._md5.update(data)
            if self._size + len(data) >= PARALLEL_HASHING_AFTER:
                self._helper = _HashHelper(self._blake2, self._md5)
        self._size += len(data)
        return self._file.write(data)

    def digests(self) -> Digests:
        """The digests of everything written so far; writing may go on afterwards."""
        if self._helper is not None:
            self._helper.sync()
        return Digests(
            self._size, self._sha256.hexdigest(), self._blake2.hexdigest(), self._md5.hexdigest()
        )

    def finish(self, *, sync: bool = True) -> None:
        """Flush and fsync, so a later rename publishes complete bytes (`sync=False`: the
        caller makes a whole batch durable at once, Storage.make_durable, before renaming)."""
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._file.seek(0)

    def discard(self) -> None:
        try:
            self.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    # The file-like surface werkzeug's FileStorage uses.
    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        try:
            if self._helper is not None:
                self._helper.stop()
        finally:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def digest_file(path: Path) -> Digests:
    """Hash an existing file (imports, integrity checks) in 1 MiB chunks."""
    sha256, blake2, md5 = (
        hashlib.sha256(),
        hashlib.blake2b(digest_size=32),
        hashlib.md5(usedforsecurity=False),
    )
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
            sha256.update(chunk)
            blake2.update(chunk)
            md5.update(chunk)
    return Digests(size, sha256.hexdigest(), blake2.hexdigest(), md5.hexdigest())


class TempFiles:
    """Uploads in flight: hashing temp files in tmp/, named after this process's lock."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        # Names temp files after a lock this process holds, so `check` knows live ones.
        self.owner = TempOwner(tmp_dir)

    def new_temp(self) -> HashingTempFile:
        return HashingTempFile(self.tmp_dir, self.owner.prefix("upload"))

    def write_temp(self, data: bytes, *, sync: bool = True) -> Path:
        """Write small bytes (a .metadata file) to an fsynced temp file (`sync=False`: the
        caller makes it durable with its batch)."""
        prefix = self.owner.prefix("meta")
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=prefix, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        return Path(name)

    def make_durable(self, paths: list[Path]) -> None:
        """Make these files' bytes, or these directories' entries, survive a power cut: one
        syncfs(2) of the data dir's filesystem on Linux instead of an fsync each (a bulk
        import's batch: ~0.5 ms per fsync on the test VM, two per file, held it near 300
        files/s); an fsync of each path elsewhere."""
        if paths and not sync_filesystem(self.tmp_dir):
            for path in paths:
                fsync_path(path)


class Storage(TempFiles, Store):
    """The packages tree of one data dir."""

    def __init__(self, packages_dir: Path, tmp_dir: Path) -> None:
        super().__init__(tmp_dir)
        self.packages_dir = packages_dir

    def ensure_dirs(self) -> None:
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def file_path(self, project: str, filename: str) -> Path:
        """Where a distribution lives. Refuses anything that is not a plain name."""
        check_names(project, filename)
        return self.packages_dir / project / filename

    def metadata_path(self, project: str, filename: str) -> Path:
        return self.file_path(project, filename + METADATA_SUFFIX)

    def publish(
        self, temp: Path, final: Path, *, sync: bool = True, sha256: str | None = None
    ) -> None:
        """Atomically move a complete temp file into place and make the rename durable
        (`sync=False`: the caller makes the directories durable once for a batch, before
        its rows). The temp file was hashed as it was written and is durable (fsynced, or
        by the batch's make_durable): the rename cannot change it."""
        try:
            os.replace(temp, final)
        except FileNotFoundError:  # the project's first file (a mkdir per file cost ~5%)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
        if sync:
            fsync_dir(final.parent)

    def remove(self, *paths: Path) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in paths:
            fsync_dir(path.parent)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def sync_published(self, paths: Iterable[Path]) -> None:
        self.make_durable(sorted({self.packages_dir} | {path.parent for path in paths}))

    def open_read(self, path: Path) -> IO[bytes]:
        return path.open("rb")

    def objects(self) -> Iterator[StoredObject]:
        now = time.time()
        for base, _dirs, names in os.walk(self.packages_dir):
            for name in names:
                path = Path(base) / name
                with contextlib.suppress(FileNotFoundError):
                    stat = path.lstat()
                    yield StoredObject(path, stat.st_size, now - stat.st_mtime)


# The data dir holds password hashes (the database, its WAL, backups) and the session key:
# owner-only whatever the umask (issue 10: outside systemd the database was 0644).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_FILES = (
    "teamindex.sqlite3",
    "teamindex.sqlite3-wal",
    "teamindex.sqlite3-shm",
    "secret_key",
)


def make_private(directory: Path) -> list[Path]:
    """Create `directory` if needed and make it and its secret files owner-only; returns
    what existed before with wider permissions (for the start-up log; a directory created
    here is no news, even if the umask widened it). Package files are created 0600 by
    mkstemp, and nobody else can reach anything inside a 0700 directory anyway."""
    existed = directory.exists()
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    changed = []
    for path, mode in [(directory, PRIVATE_DIR_MODE)] + [
        (directory / name, PRIVATE_FILE_MODE) for name in PRIVATE_FILES
    ]:
        try:
            current = path.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if current & ~mode:
            os.chmod(path, mode)
            if existed:
                changed.append(path)
    return changed


def check_names(project: str, filename: str) -> None:
    """ValueError unless `project` is a normalized name and `filename` one plain component:
    stored names are built from these two only, so no request can name another path."""
    # Imported here: packaging.utils loads packaging.tags (platform, sysconfig), ~10 ms that
    # `serve` spends before its first answer otherwise, which stores nothing (issue 14).
    from packaging.utils import canonicalize_name

    if canonicalize_name(project) != project or not _is_plain(project):
        raise ValueError(f"not a normalized project name: {project!r}")
    if not _is_plain(filename):
        raise ValueError(f"not a plain filename: {filename!r}")


def _is_plain(name: str) -> bool:
    """One non-empty, non-hidden path component (canonicalize_name keeps "/" and "\\")."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory so a rename or unlink inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


def _load_syncfs() -> Any:
    """libc's syncfs on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


_SYNCFS: Any = None
_SYNCFS_LOADED = False


def sync_filesystem(directory: Path) -> bool:
    """syncfs(2) the filesystem holding `directory`: every file written and every rename
    made on it is on disk when it returns. False where there is no syncfs (the caller then
    fsyncs each path); a failing syncfs raises OSError, like a failing fsync."""
    global _SYNCFS, _SYNCFS_LOADED
    if not _SYNCFS_LOADED:
        _SYNCFS, _SYNCFS_LOADED = _load_syncfs(), True
    if _SYNCFS is None:
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}", str(directory))
    finally:
        os.close(fd)
    return True
