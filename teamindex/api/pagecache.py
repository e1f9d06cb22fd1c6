"""Rendered simple pages kept in memory, each valid for one serial of the index. No Flask.

A page is rebuilt only when its project's serial (or, for the root, the index serial)
changes; the serial lives in SQLite, so a yank made by the CLI in another process is seen
by the server on the next request. Each entry keeps its body, strong ETag and gzip form.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .. import loading
from ..headers import UNSURE, weak_match

# Below this size gzip saves less than the header and the CPU it costs.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    etag: str  # without quotes
    gzipped: bytes | None = field(default=None, repr=False)

    @classmethod
    def build(cls, body: bytes) -> CachedPage:
        etag = hashlib.sha256(body).hexdigest()[:32]
        packed = (
            gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        )
        return cls(body, etag, packed)


# Clients revalidate every time (cheap 304s); a max-age would hide new uploads from pip, uv
# and poetry for that long (PROTOCOL.md 3.11). private: the pages sit behind auth.
CACHE_CONTROL = "private, max-age=0, must-revalidate"


@dataclass(frozen=True)
class PageReply:
    """An HTTP answer for a cached page: the Flask view and the hot path both send this."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def page_reply(
    page: CachedPage, mimetype: str, accept_encoding: str, if_none_match: str | None
) -> PageReply:
    """304 on a matching If-None-Match, else the page, gzipped when the client accepts it."""
    use_gzip = page.gzipped is not None and "gzip" in accept_encoding
    etag = page.etag + ("-gz" if use_gzip else "")
    headers = [
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", CACHE_CONTROL),
        ("ETag", f'"{etag}"'),
        ("X-Content-Type-Options", "nosniff"),
    ]
    # RFC 9110 13.1.2: If-None-Match uses weak comparison (nginx weakens ETags it gzips).
    if if_none_match and _etag_matches(if_none_match, etag):
        return PageReply(304, headers, b"")
    body = page.body
    if use_gzip and page.gzipped is not None:
        body = page.gzipped
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Type", mimetype))
    headers.append(("Content-Length", str(len(body))))
    return PageReply(200, headers, body)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, werkzeug only for headers outside the simple grammar (imported then:
    the first request must not pay for it, issue 14)."""
    matched = weak_match(if_none_match, etag)
    if matched is not UNSURE:
        return matched
    loading.wait()
    from werkzeug.http import parse_etags

    return parse_etags(if_none_match).contains_weak(etag)


def root_key(content_type: str, view: str) -> tuple[str, ...]:
    return ("root", content_type, view)


def project_key(name: str, content_type: str) -> tuple[str, ...]:
    return ("project", name, content_type)


class PageCache:
    """LRU of rendered pages keyed by (kind, name, content type), tagged with a serial (or,
    for a proxied page, a tuple of everything it depends on: api/proxy.page_tag)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], tuple[Hashable, CachedPage]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # pages rendered; tests assert a hit renders nothing

    def get(self, key: tuple[str, ...], serial: Hashable) -> CachedPage | None:
        """The page rendered at `serial`, or None (nothing is rendered here)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != serial:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def get_or_build(
        self, key: tuple[str, ...], serial: Hashable, build: Callable[[], bytes]
    ) -> CachedPage:
        page = self.get(key, serial)
        if page is not None:
            return page
        page = CachedPage.build(build())
        with self._lock:
            self.builds += 1
            self._entries[key] = (serial, page)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return page

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
