"""Upstream project pages: PEP 691 JSON parsed strictly, cached on disk, revalidated, shared.

A page is used for `ttl` seconds, then revalidated with If-None-Match (a 304 keeps the copy).
Concurrent misses for one name wait on one lock, so one upstream request serves them all
(every wait bounded). When upstream fails or times out, the last good copy is served for
`stale_for` seconds after it was last confirmed (devpi #925 served empty pages instead);
past that, the request fails with 502/504. While it serves a stale copy it asks upstream
again at most every RETRY_STALE seconds per page, so an outage does not make each request
wait for a timeout, and the hot path answers the stale copy from memory in between.
Offline, only cached copies are served.

Copies live under <data>/upstream/pages/<name>.json (temp + rename), so a restart or another
process sees them; memory holds the parsed form of the most recently used ones (MEMORY_FILES).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..clock import utc_stamp
from .client import UpstreamClient, UpstreamFailed
from .keyedlocks import KeyedLocks
from .stats import Stats

log = logging.getLogger("teamindex")

SHA256 = re.compile(r"[0-9a-f]{64}")
PROJECT_STATUSES = {"active", "archived", "quarantined", "deprecated"}
LOCK_WAIT = 40.0  # longer than one upstream page fetch may take (connect + read timeouts)
# Parsed pages kept in memory, counted in files (a parsed file entry is ~1 KB; a page's JSON
# is ~0.6 KB per file): ~64 MB at most. A team's dependency closure is a few hundred names
# of tens to hundreds of files each, so it fits; a page pushed out is read back from its
# copy on disk (one parse, no upstream request) and, until then, is Flask's to answer.
MEMORY_FILES = 64_000
# After a failed refresh, a page's stale copy is served without asking upstream for this long:
# a down upstream costs one request (and one timeout) per page per 30 s instead of one per
# install; short next to the 10 min default TTL, so a recovery shows within half a minute.
RETRY_STALE = 30.0


class PageUnavailable(Exception):
    """No usable copy: `status` 502/504 (upstream failed), 503 (offline, not cached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UpstreamFile:
    filename: str
    url: str  # absolute, upstream's
    sha256: str
    version: str
    size: int | None
    upload_time: datetime | None
    requires_python: str | None
    yanked: bool | str
    metadata_sha256: str | None  # PEP 658/714 hash; None: no verifiable .metadata


@dataclass(frozen=True)
class UpstreamPage:
    name: str
    files: tuple[UpstreamFile, ...]
    status: dict[str, str] | None  # PEP 792 project-status
    fetched: float  # when upstream last confirmed this copy (Unix time)
    etag: str | None = None
    missing: bool = False  # upstream has no such project
    version: str = ""  # a digest of upstream's body: pages built from this copy key on it
    retry_after: float = 0.0  # a refresh failed: serve this copy stale until then (Unix time)

    def file(self, filename: str) -> UpstreamFile | None:
        return self._by_filename.get(filename)

    @cached_property
    def _by_filename(self) -> dict[str, UpstreamFile]:
        """Files by name: a download looks its file up on pages of thousands (hot path)."""
        return {f.filename: f for f in self.files}

    @cached_property
    def upload_times(self) -> tuple[datetime, ...]:
        """The files' upload-times, sorted (policy.shown_mark bisects them per request)."""
        return tuple(sorted(f.upload_time for f in self.files if f.upload_time is not None))


def _version_of(filename: str, project: str) -> str | None:
    """The version a wheel or sdist filename names, if it is one of `project`'s."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None  # eggs, installers: no installer of today uses them
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None
    return str(version) if canonicalize_name(name) == project else None


def _plain(filename: str) -> bool:
    return (
        0 < len(filename) <= 255
        and not filename.startswith(".")
        and not any(c in filename for c in "/\\\0?#%")
    )


def _upload_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc) if moment.tzinfo else None


def _metadata_hash(entry: dict[str, Any]) -> str | None:
    value = entry.get("core-metadata", entry.get("dist-info-metadata"))
    if isinstance(value, dict):
        digest = value.get("sha256")
        if isinstance(digest, str) and SHA256.fullmatch(digest.lower()):
            return digest.lower()
    return None  # `true` without a hash cannot be checked, so it is not advertised


def _file_from(entry: Any, project: str, page_url: str) -> UpstreamFile | None:
    """One file of the page, or None when it is unusable: no sha256 (nothing to verify
    against), a filename that is no plain name or not of this project, a URL not http(s)."""
    if not isinstance(entry, dict):
        return None
    filename, url, hashes = entry.get("filename"), entry.get("url"), entry.get("hashes")
    if not isinstance(filename, str) or not isinstance(url, str) or not isinstance(hashes, dict):
        return None
    sha256 = hashes.get("sha256")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256.lower()):
        return None
    if not _plain(filename):
        return None
    version = _version_of(filename, project)
    absolute = urljoin(page_url, url).split("#", 1)[0]
    if version is None or urlsplit(absolute).scheme not in {"http", "https"}:
        return None
    size = entry.get("size")
    yanked = entry.get("yanked", False)
    if not isinstance(yanked, (bool, str)) or yanked == "":
        yanked = bool(yanked)
    requires_python = entry.get("requires-python")
    is_wheel = filename.endswith(".whl")
    return UpstreamFile(
        filename=filename,
        url=absolute,
        sha256=sha256.lower(),
        version=version,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=_upload_time(entry.get("upload-time")),
        requires_python=requires_python if isinstance(requires_python, str) else None,
        yanked=yanked,
        # Metadata only for wheels (PROTOCOL 3.8): an sdist's PKG-INFO may be dynamic.
        metadata_sha256=_metadata_hash(entry) if is_wheel else None,
    )


def parse_page(project: str, body: bytes, page_url: str, fetched: float) -> UpstreamPage:
    """A PEP 691 project page; malformed JSON or a foreign major version is a 502."""
    try:
        data = json.loads(body)
        version = str(data["meta"]["api-version"])
        entries = data["files"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamFailed(502, f"upstream page of {project} is not PEP 691 JSON") from None
    if not version.startswith("1.") or not isinstance(entries, list):
        raise UpstreamFailed(502, f"upstream page of {project} has API version {version[:20]}")
    files = {}
    for entry in entries:
        found = _file_from(entry, project, page_url)
        if found is not None:
            files.setdefault(found.filename, found)
    status = data.get("project-status")
    clean_status = None
    if isinstance(status, dict) and status.get("status") in PROJECT_STATUSES:
        clean_status = {"status": status["status"]}
        if isinstance(status.get("reason"), str) and status["reason"]:
            clean_status["reason"] = status["reason"]
    version = hashlib.sha256(body).hexdigest()[:32]
    return UpstreamPage(project, tuple(files.values()), clean_status, fetched, version=version)


def entry_dict(found: UpstreamFile, url: str) -> dict[str, Any]:
    """The PEP 691 file entry as this index serves it (its own URL, upstream's facts)."""
    entry: dict[str, Any] = {
        "filename": found.filename,
        "url": url,
        "hashes": {"sha256": found.sha256},
        "yanked": found.yanked,
    }
    if found.size is not None:
        entry["size"] = found.size
    if found.upload_time is not None:
        entry["upload-time"] = utc_stamp(found.upload_time)
    if found.requires_python:
        entry["requires-python"] = found.requires_python
    if found.metadata_sha256:
        entry["core-metadata"] = {"sha256": found.metadata_sha256}
    return entry


def _weight(page: UpstreamPage) -> int:
    """A page's share of MEMORY_FILES: its files (an empty or missing page counts one)."""
    return max(1, len(page.files))


class PageCache:
    """Upstream pages of one data dir; see the module docstring."""

    def __init__(
        self,
        client: UpstreamClient | None,
        directory: Path,
        *,
        ttl: float,
        stale_for: float,
        clock: Any = time.time,
        stats: Stats | None = None,
    ) -> None:
        self.client = client  # None: offline
        self.stats = stats or Stats()
        self.directory = directory
        self.ttl = ttl
        self.stale_for = stale_for
        self.clock = clock
        self.memory_files = MEMORY_FILES
        self._memory: OrderedDict[str, UpstreamPage] = OrderedDict()  # least recent first
        self._memory_weight = 0
        self._locks = KeyedLocks()  # per name: one upstream request for concurrent misses
        self._guard = threading.Lock()  # the memory dict and its weight
        self.fetches = 0  # upstream page requests made (metrics, tests)

    def get(self, name: str) -> UpstreamPage:
        """The page of a normalized name (missing=True: upstream has none), or raise."""
        cached = self._cached(name)
        if cached is not None and (self._fresh(cached) or self.client is None):
            self.stats.add("page", "hit")
            return cached
        if cached is not None and self._backing_off(cached):
            self.stats.add("page", "stale")
            return cached
        self.stats.add("page", "miss")
        if self.client is None:
            raise PageUnavailable(503, f"offline: no cached upstream page for {name}")
        if not self._locks.acquire(name, LOCK_WAIT):
            return self._stale_or_raise(name, cached, PageUnavailable(504, "upstream busy"))
        try:
            cached = self._cached(name)
            if cached is not None and (self._fresh(cached) or self._backing_off(cached)):
                return cached  # another request fetched it (or failed to) while this one waited
            return self._refresh(name, cached)
        finally:
            self._locks.release(name)

    def peek(self, name: str) -> UpstreamPage | None:
        """The page from memory if it may be used as it is (fresh, offline, or stale while
        upstream is being given time after a failure): no disk, no upstream, no wait. The
        hot path asks this; anything else goes to `get`."""
        page = self._recall(name)
        if page is None:
            return None
        if self.client is None or self._fresh(page):
            self.stats.add("page", "hit")
            return page
        if self._backing_off(page):
            self.stats.add("page", "stale")
            return page
        return None

    def _refresh(self, name: str, cached: UpstreamPage | None) -> UpstreamPage:
        assert self.client is not None
        self.fetches += 1
        self.stats.add("requests", "page")
        now = self.clock()
        try:
            reply = self.client.get_page(name, cached.etag if cached else None)
            self.stats.add("bytes", "page", len(reply.body))
            if reply.status == 304 and cached is not None:
                page = UpstreamPage(
                    cached.name,
                    cached.files,
                    cached.status,
                    now,
                    cached.etag,
                    cached.missing,
                    cached.version,
                )
                self._store(name, page, None, "")
                return page
            if reply.status in (304, 404):
                page = UpstreamPage(name, (), None, now, None, missing=True, version="missing")
                self._store(name, page, None, "")
                return page
            parsed = parse_page(name, reply.body, reply.url, now)
            page = UpstreamPage(
                name, parsed.files, parsed.status, now, reply.etag, version=parsed.version
            )
            self._store(name, page, reply.body, reply.url)
            return page
        except UpstreamFailed as exc:
            self.stats.add("errors", "page")
            log.warning("upstream page %s: %s", name, exc.message)
            return self._stale_or_raise(name, cached, PageUnavailable(exc.status, exc.message))

    def _stale_or_raise(
        self, name: str, cached: UpstreamPage | None, error: PageUnavailable
    ) -> UpstreamPage:
        """The last good copy, if still in its stale window, kept in memory with the time
        before which upstream is not asked again (RETRY_STALE); else the error."""
        now = self.clock()
        current = self._recall(name)
        if cached is not None and current is not None and current.fetched > cached.fetched:
            return current  # refreshed meanwhile (this request waited past LOCK_WAIT)
        if cached is not None and now - cached.fetched <= self.stale_for:
            stale = replace(cached, retry_after=now + RETRY_STALE)
            self._remember(name, stale)
            return stale
        raise PageUnavailable(error.status, f"{error.message}; no usable copy of {name}")

    def _fresh(self, page: UpstreamPage) -> bool:
        return self.clock() - page.fetched < self.ttl

    def _backing_off(self, page: UpstreamPage) -> bool:
        """A refresh of this copy failed a moment ago, and it may still be served stale."""
        now = self.clock()
        return now < page.retry_after and now - page.fetched <= self.stale_for

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def _recall(self, name: str) -> UpstreamPage | None:
        """The page from memory, marked as just used."""
        with self._guard:
            page = self._memory.get(name)
            if page is not None:
                self._memory.move_to_end(name)
            return page

    def _remember(self, name: str, page: UpstreamPage) -> None:
        """Keep the parsed page, dropping the least recently used ones past the budget
        (never the page just kept, however large)."""
        with self._guard:
            previous = self._memory.pop(name, None)
            if previous is not None:
                self._memory_weight -= _weight(previous)
            self._memory[name] = page
            self._memory_weight += _weight(page)
            while self._memory_weight > self.memory_files and len(self._memory) > 1:
                _name, dropped = self._memory.popitem(last=False)
                self._memory_weight -= _weight(dropped)

    def _cached(self, name: str) -> UpstreamPage | None:
        page = self._recall(name)
        if page is not None:
            return page
        try:
            stored = json.loads(self._path(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        try:
            if stored.get("missing"):
                page = UpstreamPage(
                    name, (), None, stored["fetched"], None, missing=True, version="missing"
                )
            else:
                parsed = parse_page(name, stored["body"].encode(), stored["url"], stored["fetched"])
                page = UpstreamPage(
                    name,
                    parsed.files,
                    parsed.status,
                    stored["fetched"],
                    stored.get("etag"),
                    version=parsed.version,
                )
        except (UpstreamFailed, KeyError, TypeError, AttributeError):
            return None
        self._remember(name, page)
        return page

    def _store(self, name: str, page: UpstreamPage, body: bytes | None, url: str) -> None:
        """Remember the page in memory and on disk (a 304 rewrites only the time)."""
        self._remember(name, page)
        path = self._path(name)
        if body is None and not page.missing:
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                return
            stored["fetched"] = page.fetched
        elif page.missing:
            stored = {"missing": True, "fetched": page.fetched}
        else:
            assert body is not None
            stored = {"fetched": page.fetched, "etag": page.etag, "url": url, "body": body.decode()}
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".page-", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(stored, handle)
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            log.warning("could not store the upstream page of %s", name)
