"""Upstream files: fetched on first download, verified, kept by content, evicted by age of use.

Files are stored by their sha256 (<data>/upstream/files/<ab>/<sha256>), so a file is only
ever served from the cache under the hash the current upstream page names: bytes that did
not match were never stored, and a page that changes a file's hash simply misses.

A first download is streamed to the client while it is written to a temp file and hashed.
The last chunk is held back until the whole body matched the page's sha256 and size; on a
mismatch the temp file is dropped, the event logged, and the response ends short of its
Content-Length, so the client sees a broken transfer, never a complete bad file. When the
page gives no size, or the request is HEAD or a Range request, the file is fetched and
verified first and then served from disk (verify-then-serve).

A cached file's mtime is its last download, to within TOUCH_EVERY (a touch is a metadata
write: one per download per file would be one per request on a busy wheel); above the size
cap the least recently downloaded go first. Hosted files live elsewhere and are never touched here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .client import UpstreamClient, UpstreamFailed, chunks
from .keyedlocks import KeyedLocks
from .pages import UpstreamFile
from .stats import Stats

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("teamindex")

MAX_METADATA_BYTES = 16 << 20
FILE_LOCK_WAIT = 120.0  # a second request for a file being fetched waits this long at most
STALE_TEMP_SECONDS = 3600.0
TOUCH_EVERY = 60.0  # eviction order is by last download, to the minute


class Mismatch(UpstreamFailed):
    """Upstream's bytes do not match the hash its page named."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message)


@dataclass(frozen=True)
class CacheStatus:
    files: int
    bytes: int
    limit: int


class FileCache:
    def __init__(
        self,
        client: UpstreamClient | None,
        directory: Path,
        limit: int,
        stats: Stats | None = None,
    ) -> None:
        self.client = client  # None: offline
        self.stats = stats or Stats()
        self.files_dir = directory / "files"
        self.tmp_dir = directory / "tmp"
        self.limit = limit
        self.locks = KeyedLocks()  # per sha256: one upstream fetch for concurrent misses
        self._evicting = threading.Lock()
        self.fetches = 0
        self.rejected = 0

    def ensure_dirs(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - STALE_TEMP_SECONDS
        for leftover in self.tmp_dir.glob("*.part"):  # a crashed fetch's debris
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path(self, sha256: str) -> Path:
        return self.files_dir / sha256[:2] / sha256

    def metadata_path(self, sha256: str) -> Path:
        return self.files_dir / sha256[:2] / f"{sha256}.metadata"

    def cached(self, sha256: str) -> Path | None:
        """The stored file, marked as just downloaded (for eviction), or None."""
        path = self.path(sha256)
        try:
            self.touch(path, path.stat().st_mtime)
        except FileNotFoundError:
            return None
        return path

    def touch(self, path: Path, mtime: float) -> None:
        """Mark a cached file (whose mtime is `mtime`) as just downloaded, unless it was
        within TOUCH_EVERY: the hot path passes the mtime of the file it opened."""
        if time.time() - mtime >= TOUCH_EVERY:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)

    # -- fetching ----------------------------------------------------------------------------

    def _client(self) -> UpstreamClient:
        if self.client is None:
            raise UpstreamFailed(503, "offline: the file is not cached")
        return self.client

    def fetch(self, found: UpstreamFile) -> Path:
        """Fetch, verify and store a file before serving it (verify-then-serve)."""
        acquired = self.locks.acquire(found.sha256, FILE_LOCK_WAIT)
        try:
            path = self.cached(found.sha256)
            if path is not None:
                self.stats.add("file", "hit")
                return path
            self.stats.add("file", "miss")
            relay = Relay(self, found, self._open(found), held=False)
            for _chunk in relay:
                pass
            path = self.cached(found.sha256)
            if path is None:
                raise Mismatch(f"upstream file {found.filename} failed verification")
            return path
        finally:
            if acquired:
                self.locks.release(found.sha256)

    def stream(self, found: UpstreamFile) -> Relay | Path:
        """Start relaying a file to the client (GET of a file with a known size). Holds the
        file's lock until the relay ends, so a concurrent request waits and then reads the
        stored copy instead of fetching it again (then the stored path is returned)."""
        acquired = self.locks.acquire(found.sha256, FILE_LOCK_WAIT)
        try:
            path = self.cached(found.sha256)
            if path is not None:
                self.stats.add("file", "hit")
                if acquired:
                    self.locks.release(found.sha256)
                return path
            self.stats.add("file", "miss")
            response = self._open(found)
        except BaseException:
            if acquired:
                self.locks.release(found.sha256)
            raise
        return Relay(self, found, response, held=acquired)

    def _open(self, found: UpstreamFile) -> urllib3.BaseHTTPResponse:
        client = self._client()
        self.fetches += 1
        self.stats.add("requests", "file")
        try:
            return client.open(found.url)
        except UpstreamFailed:
            self.stats.add("errors", "file")
            raise

    def metadata(self, found: UpstreamFile) -> Path:
        """The wheel's PEP 658 metadata, fetched once and checked against its own hash."""
        assert found.metadata_sha256 is not None
        path = self.metadata_path(found.metadata_sha256)
        with contextlib.suppress(FileNotFoundError):
            self.touch(path, path.stat().st_mtime)
            self.stats.add("metadata", "hit")
            return path
        self.stats.add("metadata", "miss")
        self.stats.add("requests", "metadata")
        try:
            data = self._client().get_small(found.url + ".metadata", MAX_METADATA_BYTES)
        except UpstreamFailed:
            self.stats.add("errors", "metadata")
            raise
        self.stats.add("bytes", "metadata", len(data))
        if hashlib.sha256(data).hexdigest() != found.metadata_sha256:
            self.stats.add("errors", "mismatch")
            self.rejected += 1
            log.error("upstream metadata of %s does not match its sha256: refused", found.filename)
            raise Mismatch(f"upstream metadata of {found.filename} does not match its hash")
        self._publish_bytes(data, path)
        return path

    def _publish_bytes(self, data: bytes, path: Path) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.tmp_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    # -- size ---------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[float, int, Path]]:
        found = []
        for path in self.files_dir.glob("*/*"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        return found

    def status(self) -> CacheStatus:
        entries = self._entries()
        return CacheStatus(len(entries), sum(size for _m, size, _p in entries), self.limit)

    def evict(self, keep: Path | None = None, limit: int | None = None) -> tuple[int, int]:
        """Remove least recently downloaded files until the cache fits `limit` (default: the
        cap); returns (files, bytes) removed. Never removes `keep` (the file just stored)."""
        limit = self.limit if limit is None else limit
        with self._evicting:
            entries = sorted(self._entries())
            total = sum(size for _m, size, _p in entries)
            removed = freed = 0
            for _mtime, size, path in entries:
                if total <= limit:
                    break
                if path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
                    freed += size
                    total -= size
            return removed, freed


class Relay:
    """The body of a first download: upstream's chunks, written, hashed and passed on, the
    last one held back until the whole file is verified (see the module docstring)."""

    def __init__(
        self,
        cache: FileCache,
        found: UpstreamFile,
        response: urllib3.BaseHTTPResponse,
        *,
        held: bool,
    ) -> None:
        self.cache = cache
        self.found = found
        self.response = response
        self.held = held  # this relay holds the file's lock in cache.locks until it ends
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        cache, found = self.cache, self.found
        cache.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=cache.tmp_dir, suffix=".part")
        digest, size, held, kept = hashlib.sha256(), 0, b"", False
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks(self.response):
                    size += len(chunk)
                    if found.size is not None and size > found.size:
                        raise Mismatch(f"upstream file {found.filename} is longer than its size")
                    digest.update(chunk)
                    out.write(chunk)
                    if held:
                        yield held
                    held = chunk
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != found.sha256 or (
                found.size is not None and size != found.size
            ):
                raise Mismatch(f"upstream file {found.filename} does not match its sha256")
            final = cache.path(found.sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
            kept = True
            cache.evict(keep=final)
            if held:
                yield held
        except UpstreamFailed as exc:
            # Headers are sent: the only honest signal left is a short body.
            cache.stats.add("errors", "mismatch" if isinstance(exc, Mismatch) else "file")
            if isinstance(exc, Mismatch):
                cache.rejected += 1
                log.error("%s: not stored, not served", exc.message)
            else:
                log.warning("upstream file %s: %s", found.filename, exc.message)
        finally:
            cache.stats.add("bytes", "file", size)
            if not kept:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            self.close()

    def close(self) -> None:
        """Release the upstream connection and the file's lock (also when never iterated:
        a HEAD request, or a client that went away before the first byte)."""
        if self.closed:
            return
        self.closed = True
        self.response.close()  # possibly half read: never back into the pool
        self.response.release_conn()
        if self.held:
            self.cache.locks.release(self.found.sha256)
