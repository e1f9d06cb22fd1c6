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
from collections.abc import Callable
from dataclasses import dataclass, field

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


class PageCache:
    """LRU of rendered pages keyed by (kind, name, content type), tagged with a serial."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], tuple[int, CachedPage]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # pages rendered; tests assert a hit renders nothing

    def get_or_build(
        self, key: tuple[str, ...], serial: int, build: Callable[[], bytes]
    ) -> CachedPage:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == serial:
                self._entries.move_to_end(key)
                return hit[1]
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
