"""`serve --workers N`: N forked copies of the server on one listening socket. No Flask here.

One Python process uses one core. The parent binds the listening socket(s), does the
start-up work that must run once, forks N children and only supervises them: each child
builds today's app and serves the inherited socket with waitress, hardened as before
(serving.make_server) and drained as before (serving.serve_until_stopped). The kernel
hands each new connection to whichever child accepts it first, so a busy child takes
fewer. Pre-forking beats SO_REUSEPORT here: one bind (port 0 works, a bind error stops
the start before any child exists), no other process can join the port, and a child that
dies loses only its own connections, not a queue of accepted-but-unserved ones.

The parent:
- replaces a child that dies on its own, after a back-off (0.5 s, doubling, at most
  10 s); more than MAX_CRASHES in CRASH_WINDOW seconds means something is broken for
  good, so it stops everything and exits 1 (systemd's Restart= takes over);
- on SIGTERM or SIGINT closes its copy of the socket, passes SIGTERM on, waits for every
  child to drain (each has serving.GRACE_SECONDS) and exits 0; a child still alive after
  STOP_SECONDS is killed;
- never leaves orphans: each child asks the kernel for SIGTERM when the parent dies
  (prctl PR_SET_PDEATHSIG; elsewhere a thread watches the parent's pid).

/metrics: the children count in prometheus-client's multiprocess mode, in a private
directory the parent creates fresh and removes at exit (see metrics_dir); the directories
of parents killed with -9 go at the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .serving import GRACE_SECONDS

log = logging.getLogger("teamindex")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it
METRICS_PREFIX = "teamindex-metrics-"
METRICS_LOCK = "parent.lock"
MAX_CRASHES = 5
CRASH_WINDOW = 60.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
STOP_SECONDS = GRACE_SECONDS + 10.0  # a drained child exits well within its grace
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
_PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def default_workers() -> int:
    """One worker per core this process may run on (the default of --workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux, or a seccomp filter refuses it
        return max(1, os.cpu_count() or 1)


def resolve_workers(setting: int) -> int:
    """The number of processes for the `workers` setting (0: one per core)."""
    if setting < 0:
        raise ValueError(f"workers must be 0 (one per core) or more, not {setting}")
    return setting or default_workers()


def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for host and port, resolved as waitress resolves them (a name may
    give IPv4 and IPv6), so the children serve exactly what one process would."""
    from waitress.adjustments import Adjustments

    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in Adjustments(host=host, port=port).listen:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            if port == 0:  # the other addresses of the name take the port the first got
                port = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@contextlib.contextmanager
def metrics_dir(parent: Path | None = None) -> Iterator[str]:
    """A fresh private directory for prometheus-client's multiprocess files, named in the
    environment the children inherit, removed when the parent is done.

    The parent holds a lock on a file in it while it lives; a parent killed with -9 cannot
    remove its directory, so each start first removes those whose lock is free (like the
    owner locks of index/inflight.py)."""
    parent = Path(parent or tempfile.gettempdir())
    sweep_metrics_dirs(parent)
    path, lock = _locked_dir(parent)
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


def _locked_dir(parent: Path) -> tuple[str, int]:
    """A new metrics directory and the fd of its lock, held. Another start's sweep may take
    the lock between creating and locking it and remove the directory: then try again."""
    for _attempt in range(10):
        path = tempfile.mkdtemp(prefix=METRICS_PREFIX, dir=parent)  # 0700
        lock_path = Path(path) / METRICS_LOCK
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if lock_path.stat().st_ino == os.fstat(lock).st_ino:
                return path, lock
        os.close(lock)
    raise OSError(f"could not make a metrics directory in {parent}")


def sweep_metrics_dirs(parent: Path) -> None:
    """Remove the metrics directories of dead parents in `parent` (their lock is free)."""
    for path in parent.glob(METRICS_PREFIX + "*"):
        try:
            if path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            fd = os.open(path / METRICS_LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # not ours, or not made by this code
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running server's
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when `parent` exits (even by kill -9): it then drains and
    exits like on a stop. Called in the child right after fork."""
    # The running program's own symbols, libc's among them (dlopen(NULL)): find_library
    # would run `ldconfig -p` in a subprocess, ~5-10 ms of every worker's start (issue 14).
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@dataclass
class Supervisor:
    """Forks `count` children running `serve` and keeps them alive until a stop signal.

    `serve` runs in the child with the default signal handlers back and returns its exit
    code; the child then exits without unwinding the parent's stack."""

    count: int
    serve: Callable[[], int]
    on_exit: Callable[[int], None] = lambda pid: None  # a child is gone (metrics files)
    children: dict[int, int] = field(default_factory=dict)  # pid -> slot
    crashes: list[float] = field(default_factory=list)
    stopping: bool = False
    deadline: float = float("inf")

    def run(self, listening: Sequence[socket.socket]) -> int:
        """Supervise until stopped; 0 after a clean stop, 1 after too many crashes."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        pending: dict[int, float] = {}  # slot -> when to start it
        try:
            for slot in range(self.count):
                self._start(slot)
            while self.children or pending:
                if self.stopping:
                    pending.clear()
                now = time.monotonic()
                for slot, when in list(pending.items()):
                    if when <= now:
                        del pending[slot]
                        self._start(slot)
                wait = min([*pending.values(), now + 1.0]) - now
                info = signal.sigtimedwait(_SIGNALS, max(wait, 0.01))
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self._stop(listening, signal.Signals(info.si_signo).name)
                for pid, slot, status in self._reap():
                    if not self.stopping:
                        delay = self._crashed(pid, status)
                        if delay is None:
                            self._stop(listening, "too many crashes")
                            return self._finish(1)
                        pending[slot] = time.monotonic() + delay
            return self._finish(0)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def _start(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                die_with_parent(parent)
                code = self.serve()
            except BaseException:
                log.exception("worker failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot
        log.info("worker %d started (pid %d)", slot + 1, pid)

    def _reap(self) -> list[tuple[int, int, int]]:
        gone = []
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            slot = self.children.pop(pid, None)
            if slot is not None:
                self.on_exit(pid)
                gone.append((pid, slot, status))
        return gone

    def _crashed(self, pid: int, status: int) -> float | None:
        """Log a child that died on its own; the back-off before its replacement, or None
        when it crashed too often to go on."""
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        how = (
            f"signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit code {os.waitstatus_to_exitcode(status)}"
        )
        if len(self.crashes) > MAX_CRASHES:
            log.error(
                "worker pid %d died (%s): %d crashes in %g s, giving up",
                pid,
                how,
                len(self.crashes),
                CRASH_WINDOW,
            )
            return None
        delay = min(FIRST_BACKOFF * 2 ** (len(self.crashes) - 1), MAX_BACKOFF)
        log.error("worker pid %d died (%s); replacing it in %g s", pid, how, delay)
        return delay

    def _stop(self, listening: Sequence[socket.socket], why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.deadline = time.monotonic() + STOP_SECONDS
        log.info("stopping (%s): draining %d worker(s)", why, len(self.children))
        for sock in listening:  # the children close theirs: then the port is free
            sock.close()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _finish(self, code: int) -> int:
        """Wait for every child (killing those past the deadline); `code`."""
        while self.children:
            if time.monotonic() >= self.deadline:
                for pid in self.children:
                    log.warning("worker pid %d did not stop in time; killing it", pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.deadline = float("inf")
            signal.sigtimedwait(_SIGNALS, 0.1)
            self._reap()
        log.info("all workers stopped")
        return code
