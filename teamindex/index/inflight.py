"""Which temp files in data/tmp belong to a live process. No Flask here.

Every process that writes temp files (the server, `teamindex import`) first takes an
exclusive flock on its own `tmp/owner-<token>.lock` and names its temp files
`<kind>-<token>-<random>.part`. The kernel drops the lock when the process dies, even by
`kill -9`, so `teamindex check` can tell an upload in flight (owner lock held: leave it
alone) from the debris of a crash (lock free: quarantine it) without guessing by age.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import threading
import time
from pathlib import Path

LOCK_PREFIX = "owner-"
LOCK_SUFFIX = ".lock"
# Files in tmp/ that follow no naming rule (e.g. /healthz probes) are left alone this long.
UNKNOWN_GRACE_SECONDS = 60.0


class TempOwner:
    """This process's claim on temp files; the lock file is created on first use."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self._token: str | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        with self._lock:
            if self._token is None:
                token = f"{os.getpid()}x{secrets.token_hex(4)}"
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
                path = self.tmp_dir / f"{LOCK_PREFIX}{token}{LOCK_SUFFIX}"
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd, self._token = fd, token
                # A clean exit removes the lock file; after a crash `check --repair` does.
                atexit.register(self.release)
            return self._token

    def prefix(self, kind: str) -> str:
        return f"{kind}-{self.token}-"

    def release(self) -> None:
        """Drop the claim and remove the lock file (at exit, or when a test is done)."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self.tmp_dir / f"{LOCK_PREFIX}{self._token}{LOCK_SUFFIX}").unlink()
                os.close(self._fd)
                self._fd = self._token = None


def owner_token(name: str) -> str | None:
    """The owner token in a temp or lock file name, if it follows the naming rule."""
    if name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
        return name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)] or None
    parts = name.split("-", 2)
    if len(parts) == 3 and parts[2].endswith(".part") and "x" in parts[1]:
        return parts[1]
    return None


def owner_alive(tmp_dir: Path, token: str) -> bool:
    """True while some process holds the owner lock of *token*."""
    path = tmp_dir / f"{LOCK_PREFIX}{token}{LOCK_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock, if we got it
    return False


def is_stale(tmp_dir: Path, path: Path, now: float | None = None) -> bool:
    """Whether a file in tmp/ is debris (its owner is gone) rather than work in flight."""
    token = owner_token(path.name)
    if token is not None:
        return not owner_alive(tmp_dir, token)
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > UNKNOWN_GRACE_SECONDS
