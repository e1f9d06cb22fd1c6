"""Counters of the upstream proxy, read by /metrics at scrape time (ops/metrics.py).

Plain counts under one lock, kept here rather than as prometheus objects so the proxy has
no dependency on the metrics layer above it (and tests can read them directly).
"""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, name: str, label: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[(name, label)] += amount

    def get(self, name: str, label: str) -> int:
        with self._lock:
            return self._counts[(name, label)]

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)
