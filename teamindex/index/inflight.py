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
CLAIM_ATTEMPTS = 10


class TempOwner:
    """This process's claim on temp files; the lock file is created on first use."""

    def __init__(self, tmp_dir: Path, token: str | None = None) -> None:
        """`token`: another process's claim, borrowed (an import's worker processes name
        their temp files after the importing process, which holds the lock and outlives
        them; this object never takes or releases a lock then)."""
        self.tmp_dir = tmp_dir
        self._token: str | None = token
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        with self._lock:
            if self._token is None:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
                self._fd, self._token = _claim(self.tmp_dir)
                # A clean exit removes the lock file; after a crash the next server start
                # (sweep_dead) or `check --repair` does.
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


def _claim(tmp_dir: Path) -> tuple[int, str]:
    """Create and lock a new owner lock file; its fd and token.

    A sweeper (sweep_dead, or a probe in owner_alive) may open the file between our
    O_CREAT and our flock, see it unlocked, and unlink it: we would then hold a lock on a
    file nobody can find, and our temp files would look dead. So the lock only counts if
    the path still names the locked file afterwards; otherwise try again with a new token
    (a few times: a sweeper touches each file once)."""
    for _attempt in range(CLAIM_ATTEMPTS):
        token = f"{os.getpid()}x{secrets.token_hex(4)}"
        path = tmp_dir / f"{LOCK_PREFIX}{token}{LOCK_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                return fd, token
        except BlockingIOError:  # a probe holds it this instant; it is unlinking it
            pass
        os.close(fd)
    raise OSError(f"could not claim an owner lock in {tmp_dir}")


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


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


def _remove_free_lock(path: Path) -> bool:
    """Unlink an owner lock file nobody holds; False if its owner is alive (or it is gone).

    The file is unlinked while we hold its lock, so an owner cannot take it in between
    (and _claim notices if it had opened the file just before)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
        return True
    except (BlockingIOError, FileNotFoundError):
        return False
    finally:
        os.close(fd)


def sweep_dead(tmp_dir: Path) -> list[tuple[Path, int]]:
    """Delete the temp files and owner lock files of processes proven dead (their owner
    lock is free); the (path, size) of each file removed.

    Run at server start-up, so a crash (kill -9, power loss) leaves `teamindex check`
    clean after the restart. Deleting is safe: a temp file of a dead owner never became
    part of the index (ingest renames it into packages/ before committing the row, so
    anything still in tmp/ has no row). Files that follow no naming rule are left to
    `check` (their owner cannot be proven dead), and so is anything outside tmp/: a file
    in packages/ without a row is damage an operator should see."""
    swept: list[tuple[Path, int]] = []
    try:
        entries = sorted(tmp_dir.iterdir())
    except FileNotFoundError:
        return swept
    temps = [p for p in entries if not p.name.startswith(LOCK_PREFIX)]
    locks = [p for p in entries if p.name.startswith(LOCK_PREFIX)]
    for path in temps:  # before the locks: a temp file's owner is judged by its lock
        token = owner_token(path.name)
        if token is None or owner_alive(tmp_dir, token) or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            swept.append((path, size))
    for path in locks:
        if owner_token(path.name) is not None and _remove_free_lock(path):
            swept.append((path, 0))
    return swept
