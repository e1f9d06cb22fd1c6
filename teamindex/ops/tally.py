"""The hot path's counts, held until the process's counters exist (ops/counters.py).

`serve` answers its first requests before Flask is loaded (boot.py), and the counters are
made on Flask's loading thread too: importing prometheus-client (which loads http.server
and wsgiref for its exporters) was ~30 ms of a cold start (issue 14). Counts made before
are replayed into the counters the moment they exist, so /metrics misses none.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

# Held counts beyond this are dropped: only a server whose Flask never loads (its error is
# logged, and it answers nothing else) holds this many.
MAX_HELD = 100_000


class Counts(Protocol):
    """What the hot path counts into (ops.counters.Metrics, or a Tally in front of it)."""

    def count_request(self, rule: str, method: str, status: int, seconds: float | None) -> None:
        """One request and how long it took."""

    def count_download(self, kind: str) -> None:
        """One download answered 200 or 206; kind is "dist" or "metadata"."""


class Tally:
    """Counts, held until `attach` names the counters, then passed straight through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[tuple[str, tuple[Any, ...]]] = []
        self._counters: Counts | None = None

    def count_request(self, rule: str, method: str, status: int, seconds: float | None) -> None:
        self._count("count_request", (rule, method, status, seconds))

    def count_download(self, kind: str) -> None:
        self._count("count_download", (kind,))

    def attach(self, counters: Counts) -> None:
        """Replay the held counts into `counters`; count there from now on."""
        with self._lock:
            for name, args in self._held:
                getattr(counters, name)(*args)
            self._held.clear()
            self._counters = counters

    def _count(self, name: str, args: tuple[Any, ...]) -> None:
        counters = self._counters
        if counters is None:
            with self._lock:
                counters = self._counters
                if counters is None:
                    if len(self._held) < MAX_HELD:
                        self._held.append((name, args))
                    return
        getattr(counters, name)(*args)
