"""What the web pages keep per app: the README cache, project listings, the docs store."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from ..index.docstore import DocsStore
from .readme import ReadmeCache

EXTENSION_KEY = "teamindex.web"


class ListingCache:
    """Small LRU of computed project listings; keys carry the serial, so a change to the
    index makes old entries unreachable (they age out)."""

    def __init__(self, max_entries: int = 128) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = build()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value


@dataclass(frozen=True)
class WebState:
    readmes: ReadmeCache
    docs: DocsStore
    listings: ListingCache = field(default_factory=ListingCache)


def web_state() -> WebState:
    return current_app.extensions[EXTENSION_KEY]
