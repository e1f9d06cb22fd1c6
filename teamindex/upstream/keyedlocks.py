"""One lock per key (a project name, a file's sha256), kept only while someone uses it.

Concurrent misses for one page or one file wait on one lock, so one upstream request serves
them all. A dict of a lock per key ever seen grows with every name a client asks for (an
attacker can ask for millions); here an entry lives while a request holds or waits on it and
is dropped by the last one to leave, so the dict is as large as the requests in flight.
"""

from __future__ import annotations

import threading


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0  # requests holding or waiting on `lock`


class KeyedLocks:
    """acquire(key, timeout) / release(key), as threading.Lock per key."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def acquire(self, key: str, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the key's lock; False if it stayed taken."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
        if entry.lock.acquire(timeout=timeout):
            return True
        self._leave(key, entry)
        return False

    def release(self, key: str) -> None:
        """Release a lock this caller acquired."""
        with self._guard:
            entry = self._entries[key]
            entry.lock.release()
        self._leave(key, entry)

    def __len__(self) -> int:
        """Keys in use (held or waited on)."""
        with self._guard:
            return len(self._entries)

    def _leave(self, key: str, entry: _Entry) -> None:
        with self._guard:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
