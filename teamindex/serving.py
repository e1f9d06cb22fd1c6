"""Run waitress in the foreground and stop it gracefully on SIGTERM or SIGINT.

systemd stops a service with SIGTERM and sends SIGKILL after TimeoutStopSec. On the first
signal the listening socket closes at once (no new connections; a restarted server can
bind), requests being received or processed run to completion for up to `grace` seconds,
idle keep-alive connections are closed, and the process exits 0. An upload cut off by the
deadline dies like a crash: its temp file is left to `teamindex check --repair`, and no
row or visible file exists for it, because ingest commits the row last.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from waitress import wasyncore

log = logging.getLogger("teamindex")

GRACE_SECONDS = 30.0  # keep below TimeoutStopSec in systemd/teamindex.service
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _busy(channel: Any) -> bool:
    """A waitress channel with a request half received, being processed, or being sent."""
    return bool(channel.request is not None or channel.requests or channel.total_outbufs_len)


class OncePer(logging.Filter):
    """Lets one record through per `seconds`, noting how many it held back since.

    waitress warns "Task queue depth is N" for every request that waits for a free thread;
    under load that is a line per request (39,000 in a 20 s benchmark) for ordinary
    queueing, which buries the request log. One a minute still says the threads are busy."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._next = -math.inf
        self._held = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        with self._lock:
            if now < self._next:
                self._held += 1
                return False
            held, self._held, self._next = self._held, 0, now + self.seconds
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.seconds:g} s)"
        return True


def quiet_queue_warnings(seconds: float = 60.0) -> None:
    """At most one of waitress' queue-depth warnings per `seconds` (see OncePer)."""
    logging.getLogger("waitress.queue").addFilter(OncePer(seconds))


def freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the collector's sight (gc.freeze).

    The ~45,000 objects of Flask, the app and its modules live as long as the process, yet
    every full collection walks them: a 25-30 ms pause with the GIL held, about one per
    4,000 requests, which all 16 connections of a load test wait out (it was the p99).
    Frozen, a full collection takes ~1 ms."""
    gc.collect()
    gc.freeze()


# How long a thread may hold the GIL before another one gets it (CPython's default: 5 ms).
# waitress' socket loop is one of those threads; a worker rendering a response kept it
# waiting up to 5 ms per turn. At 1 ms the p99 of a 300-file page at 16 connections went
# from 15-30 ms (mean 21.7) to 12-17 ms (mean 14.2), with no loss of requests/s.
GIL_SWITCH_SECONDS = 0.001


def tune_for_serving() -> None:
    """Process-wide settings for a long-running server, once the app is built."""
    quiet_queue_warnings()
    freeze_startup_objects()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


def serve_until_stopped(server: Any, grace: float = GRACE_SECONDS) -> None:
    """Run the waitress *server* (from waitress.create_server) until a stop signal."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        server.pull_trigger()  # wake the poll loop now rather than at its timeout

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        serve_until(server, stop, grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_until(server: Any, stop: threading.Event, grace: float = GRACE_SECONDS) -> None:
    """Run the server's loop until `stop` is set (then `server.pull_trigger()` wakes it),
    then drain and close everything from this same thread (tests stop servers this way)."""
    while not stop.is_set():
        wasyncore.loop(
            timeout=server.adj.asyncore_loop_timeout,
            map=server._map,
            use_poll=server.adj.asyncore_use_poll,
            count=1,
        )
    drain(server, grace)


def drain(server: Any, grace: float) -> None:
    """Stop accepting, let in-flight requests finish (at most *grace* seconds), close."""
    # dispatcher.close, not server.close: the latter also closes the trigger that worker
    # threads use to hand responses back to this loop.
    wasyncore.dispatcher.close(server)
    deadline = time.monotonic() + grace
    busy = [c for c in server.active_channels.values() if _busy(c)]
    log.info("stopping: no new connections; waiting for %d request(s)", len(busy))
    while True:
        busy = []
        for channel in list(server.active_channels.values()):
            if _busy(channel):
                busy.append(channel)
            elif not channel.will_close:
                channel.will_close = True  # idle keep-alive connection
        if not busy and not server.active_channels:
            break
        if time.monotonic() >= deadline:
            log.warning("stop deadline reached; abandoning %d request(s)", len(busy))
            break
        wasyncore.loop(
            timeout=0.05, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1
        )
    server.task_dispatcher.shutdown(
        cancel_pending=True, timeout=max(deadline - time.monotonic(), 1)
    )
    wasyncore.close_all(server._map)
    log.info("stopped")
