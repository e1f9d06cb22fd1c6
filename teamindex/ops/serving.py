"""Run waitress in the foreground and stop it gracefully on SIGTERM or SIGINT.

systemd stops a service with SIGTERM and sends SIGKILL after TimeoutStopSec. On the first
signal the listening socket closes at once (no new connections; a restarted server can
bind), requests being received or processed run to completion for up to `grace` seconds,
idle keep-alive connections are closed, and the process exits 0. An upload cut off by the
deadline dies like a crash: its temp file is left behind (the next start sweeps it, see
inflight.sweep_dead), and no row or visible file exists for it, because ingest commits the
row last.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress import wasyncore

if TYPE_CHECKING:
    from ..access.earlycheck import EarlyCredentials
    from ..context import Services

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
    Frozen, a full collection takes ~1 ms.

    Only the young generations are collected first: a full collection here found nothing to
    free after create_app (0 objects) yet walked all of them, 30-70 ms of every cold start
    on a loaded 2-core VM (issue 14); the young ones take ~0.5 ms."""
    gc.collect(1)
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


# -- refusing before the body -------------------------------------------------------------------
#
# waitress reads a whole request body (spilling to a temp file past inbuf_overflow) before
# the app sees the request, so a 200 MiB POST without credentials cost 200 MiB of disk and
# bandwidth before its 401, and the global allowlist's 403 came as late. The parser below
# asks `BodyGate` once the headers are complete and the request has a body: a refusal ends
# the request there (no body is read; the connection closes after the answer) and the app
# answers it from the marker header, with its usual status, body and audit.

REFUSED_HEADER = "TEAMINDEX_REFUSED"  # waitress' key; the app sees httpauth.EARLY_REFUSAL
# Bodies a request without credentials may send: the web forms (login, CSRF-checked pages)
# are a few KiB; anything that uploads needs Basic auth.
ANONYMOUS_BODY_LIMIT = 64 << 10
# A client that has not finished its request headers by then is dropped (slowloris).
HEADER_SECONDS = 15.0
# Connections one client address (an IPv6 /64) may hold open; the trusted proxy is exempt
# (it is everyone).
CONNECTIONS_PER_ADDRESS = 16
# After an early refusal the server stops sending (FIN) and discards what the client still
# sends for a while before closing: closing with unread data makes the kernel send a reset,
# which can destroy the answer before the client reads it (nginx' lingering_close).
LINGER_SECONDS = 5.0
LINGER_BYTES = 64 << 20
# Open connections in all (waitress' default: 100, which 100 slow clients filled). poll(),
# not select(): select cannot watch descriptors past 1024. Keep below the process' file
# limit (systemd's default soft LimitNOFILE is 1024).
CONNECTION_LIMIT = 600
# Inactivity that closes a connection (waitress' default: 120 s), and how often it checks.
CHANNEL_TIMEOUT_SECONDS = 30
CLEANUP_INTERVAL_SECONDS = 2


class BodyGate:
    """Decides on the headers alone whether a request with a body is refused: 403 when
    the client address is not on the global allowlist; for more than ANONYMOUS_BODY_LIMIT
    bytes (or a chunked body), 401 without an Authorization header, and whatever
    `credentials` (access.earlycheck.EarlyCredentials) refuses on the header: malformed
    Basic or a dead token (401), an unverified password from a blocked address (429).
    Runs on waitress' socket thread: a read or two of SQLite, only for requests that carry
    a body, no password hashing.

    The client is the socket peer, except for the trusted proxy (`trusted_proxy`, as
    waitress is told: one address, or "*"), whose client is the one waitress will hand the
    app (X-Forwarded-For); the proxy itself is exempt from the per-address cap."""

    def __init__(
        self,
        allowlist: Callable[[], list[str]],
        trusted_proxy: str = "",
        credentials: EarlyCredentials | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.trusted_proxy = trusted_proxy
        self.credentials = credentials

    def is_proxy(self, peer: str) -> bool:
        """True for the trusted proxy's address (waitress' own comparison)."""
        return bool(self.trusted_proxy) and self.trusted_proxy in ("*", peer)

    def client(self, peer: str, headers: dict[str, str]) -> str:
        """The address the app will see as REMOTE_ADDR."""
        if not self.is_proxy(peer) or "X_FORWARDED_FOR" not in headers:
            return peer
        from waitress.proxy_headers import parse_proxy_headers

        environ = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": headers["X_FORWARDED_FOR"]}
        try:
            parse_proxy_headers(environ, 1, {"x-forwarded-for"})
        except Exception:  # malformed: waitress answers 400 itself
            return peer
        return str(environ["REMOTE_ADDR"])

    def refusal(self, peer: str, headers: dict[str, str], length: int, chunked: bool) -> int:
        """The status to refuse with, or 0 to read the body and let the app decide."""
        from ..access.netrules import ip_allowed

        client = self.client(peer, headers)
        try:
            if not ip_allowed(client, self.allowlist()):
                return 403
        except Exception:  # the app checks again; never fail the socket thread
            log.exception("early allowlist check failed; the app decides")
        if not chunked and length <= ANONYMOUS_BODY_LIMIT:
            return 0
        authorization = headers.get("AUTHORIZATION")
        if authorization is None:
            return 401
        if self.credentials is None:
            return 0
        try:
            return self.credentials.refusal(client, authorization)
        except Exception:
            log.exception("early credential check failed; the app decides")
            return 0


def _gated_parser(gate: BodyGate, channel: Any) -> Callable[[Any], Any]:
    from waitress.parser import HTTPRequestParser

    class GatedParser(HTTPRequestParser):  # type: ignore[misc]
        """waitress' parser, asking the gate between the headers and the body."""

        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.time()
            self.gated = False

        def received(self, data: bytes) -> int:
            consumed = super().received(data)
            if self.headers_finished and not self.gated:
                self.gated = True
                self.headers.pop(REFUSED_HEADER, None)  # only the server sets it
                if not self.completed and not self.error:
                    status = gate.refusal(
                        channel.peer, self.headers, self.content_length, self.chunked
                    )
                    if status:
                        self._refuse(status)
                        return len(data)  # what came of the body in this read is dropped
            return consumed

        def _refuse(self, status: int) -> None:
            self.headers[REFUSED_HEADER] = str(status)
            self.headers["CONNECTION"] = "close"  # the unread body must not be parsed
            self.headers["CONTENT_LENGTH"] = "0"
            self.headers.pop("TRANSFER_ENCODING", None)
            self.content_length = 0
            self.chunked = False
            self.body_rcv = None
            self.completed = True
            channel.linger_pending = True

    return GatedParser


class AddressCounts:
    """Open connections per client address, for the per-address cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def enter(self, address: str) -> bool:
        """Count a new connection; False (and not counted) when the address is at its cap."""
        count = self._open.get(address, 0)
        if count >= self.limit:
            return False
        self._open[address] = count + 1
        return True

    def leave(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)


# -- answering on the socket thread ------------------------------------------------------------
#
# waitress hands every request to a worker thread and the answer back to its socket loop
# (a queue, a condition variable, a wake-up pipe, and GIL hand-offs both ways). For a hot
# page hit (api/hotpath.py: one SQLite statement and a page from memory) that hand-off cost
# more than the answer. `PreAnswer` decides on the socket thread, from the environ the app
# would see, whether the hot path answers; if it does, the request is served right there,
# its decision passed along in the environ, and waitress' worker threads never see it.

# environ -> (decision for the app, None: Flask answers; may the socket thread serve it)
PreAnswer = Callable[[dict[str, Any]], tuple[Any, bool]]
INLINE_KEY = "teamindex.pre_answer"  # app.extensions: the app's PreAnswer
# The environ key of a request decided on the socket thread: the decision, or None when
# the hot path declined it there (then it decides again on the worker, where it may verify
# a login and render a page). Clients cannot set it (their headers arrive as HTTP_*).
DECISION_KEY = "teamindex.decision"
# Output still queued on a connection above which a request goes to the workers: a worker
# may wait for the socket loop to drain it, the socket loop itself must never wait.
INLINE_OUTBUF_LIMIT = 1 << 20
# Bodies up to this size go out with their header in one send (copying them is cheaper
# than a second system call); larger ones are sent as waitress sends them.
COALESCE_BYTES = 64 << 10


def _inline_task() -> Any:
    from waitress.task import WSGITask

    class InlineTask(WSGITask):  # type: ignore[misc]
        """waitress' WSGI task, with the decision the socket thread made for its request
        (if any) in the environ, whichever thread runs it, and a small body sent in one
        piece with its header."""

        def get_environment(self) -> dict[str, Any]:
            if self.environ is None and hasattr(self.request, "decision"):
                # The environ the decision was made on (built once, not twice).
                self.environ = {**self.request.decided_environ, DECISION_KEY: self.request.decision}
            return super().get_environment()

        def write(self, data: bytes) -> None:
            """Header and body in one write (so one send, not two) when the body comes
            in one piece of its Content-Length; waitress' own write otherwise."""
            if (
                self.wrote_header
                or not self.complete
                or not data
                or len(data) > COALESCE_BYTES
                or self.content_length != len(data)
                or not self.has_body
            ):
                super().write(data)
                return
            header = self.build_response_header()
            self.wrote_header = True
            self.content_bytes_written += len(data)
            self.channel.write_soon(header + data)

    return InlineTask


def _deciding(server: Any, pre_answer: PreAnswer) -> Callable[[dict[str, Any]], Any]:
    """`pre_answer` behind the proxy-header translation waitress puts in front of the app
    (create_server), so it sees the same REMOTE_ADDR and headers the app will."""
    found: list[Any] = []

    def capture(environ: dict[str, Any], _start_response: Any) -> list[bytes]:
        found.append(pre_answer(environ))
        return []

    adj = server.adj
    chain: Any = capture
    if adj.trusted_proxy or adj.clear_untrusted_proxy_headers:
        from waitress.proxy_headers import proxy_headers_middleware

        chain = proxy_headers_middleware(
            capture,
            trusted_proxy=adj.trusted_proxy,
            trusted_proxy_count=adj.trusted_proxy_count,
            trusted_proxy_headers=adj.trusted_proxy_headers,
            clear_untrusted=adj.clear_untrusted_proxy_headers,
            log_untrusted=False,  # the app's own pass logs
            logger=server.logger,
        )

    def decide(environ: dict[str, Any]) -> tuple[Any, bool]:
        found.clear()
        chain(dict(environ), lambda *_args: None)  # a copy: the app's pass translates anew
        return found[0] if found else (None, False)

    return decide


def harden(
    server: Any,
    gate: BodyGate,
    per_address: int = CONNECTIONS_PER_ADDRESS,
    pre_answer: PreAnswer | None = None,
) -> None:
    """Fit a waitress server (from create_server) with the early refusals above, the cap on
    connections per address and the header deadline, and, given `pre_answer`, answers on
    the socket thread (above; the decision reaches the app under DECISION_KEY). Every
    hook runs on the socket thread, so the counts need no lock."""
    from waitress.channel import HTTPChannel

    from ..access.netrules import address_key

    counts = AddressCounts(per_address)
    decide = _deciding(server, pre_answer) if pre_answer is not None else None
    inline_task = _inline_task() if decide is not None else None

    class HardenedChannel(HTTPChannel):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.counted = False
            self.linger_pending = False
            self.lingering_until = 0.0
            self.discarded = 0
            super().__init__(*args, **kwargs)
            self.peer = str(self.addr[0]) if isinstance(self.addr, tuple) else str(self.addr)
            self.parser_class = _gated_parser(gate, self)
            # Keyed like the throttle: an IPv6 /64 is one client (one subscriber's network).
            self.exempt = gate.is_proxy(self.peer)
            self.address = address_key(self.peer)
            self.counted = self.exempt or counts.enter(self.address)
            if inline_task is not None:
                self.task_class = inline_task
            self.inline_thread: int | None = None
            self.inline_ready = False
            if not self.counted:
                self.handle_close()  # over the cap: closed before a byte is read

        def del_channel(self, map: Any = None) -> None:
            if self.counted and not self.exempt:
                counts.leave(self.address)
            self.counted = False
            super().del_channel(map)

        def received(self, data: bytes) -> bool:
            if self.lingering_until:
                self.discarded += len(data)
                if self.discarded > LINGER_BYTES:
                    self.lingering_until = time.time()  # enough: maintenance closes it
                return True
            if decide is None:
                return bool(super().received(data))
            self.inline_thread = threading.get_ident()
            try:
                received = bool(super().received(data))
                # Outside received(): service() takes the requests lock received() holds.
                while self.inline_ready:
                    self.inline_ready = False
                    self.serve_inline()
            finally:
                self.inline_thread = None
            return received

        def decided(self) -> bool:
            """Called (by add_task below) for the first waiting request, with the requests
            lock held: True when the hot path answers it (its decision kept on it)."""
            request = self.requests[0]
            if (
                request.error
                or request.command != "GET"
                or not request.path.startswith("/simple/")
                or self.total_outbufs_len > INLINE_OUTBUF_LIMIT
            ):
                return False
            assert decide is not None
            assert inline_task is not None
            try:
                environ = inline_task(self, request).get_environment()
                decision, inline = decide(environ)
            except Exception:  # never fail the socket thread; the workers answer
                log.exception("deciding on the socket thread failed")
                return False
            request.decided_environ = environ
            request.decision = decision
            return inline

        def serve_inline(self) -> None:
            """service() on this thread, when it cannot wait: one request waiting (so no
            wait for the next one's output to drain) and little output queued."""
            if len(self.requests) == 1 and self.total_outbufs_len <= INLINE_OUTBUF_LIMIT:
                quiet[0] = threading.get_ident()
                try:
                    self.service()
                finally:
                    quiet[0] = None
            elif self.requests:
                add_task(self)

        def handle_close(self) -> None:
            if self.linger_pending and self.connected:
                self.linger_pending = False
                try:
                    self.socket.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                else:
                    self.lingering_until = time.time() + LINGER_SECONDS
                    self.will_close = False
                    return
            self.lingering_until = 0.0
            super().handle_close()

    server.channel_class = HardenedChannel
    add_task = server.add_task

    def add_task_or_answer(channel: Any) -> None:
        """waitress' add_task, unless the channel's socket thread is the caller (in
        received()) and the hot path answers the request: then received() serves it."""
        if channel.inline_thread == threading.get_ident() and channel.decided():
            channel.inline_ready = True
        else:
            add_task(channel)

    # service() wakes the socket loop when it is done (a byte down a pipe, one more turn of
    # poll); run by the loop itself, that wake-up is moot: the loop sees the output next.
    quiet: list[int | None] = [None]
    pull_trigger = server.pull_trigger

    def pull_trigger_unless_inline(*args: Any) -> None:
        if quiet[0] != threading.get_ident():
            pull_trigger(*args)

    if decide is not None:
        server.add_task = add_task_or_answer
        server.pull_trigger = pull_trigger_unless_inline
    server.adj.connection_limit = CONNECTION_LIMIT
    server.adj.asyncore_use_poll = True
    server.adj.channel_timeout = CHANNEL_TIMEOUT_SECONDS
    server.adj.cleanup_interval = CLEANUP_INTERVAL_SECONDS
    original = server.maintenance

    def maintenance(now: float) -> None:
        original(now)
        for channel in list(server.active_channels.values()):
            request = channel.request
            started = getattr(request, "started", None)
            late = started is not None and now - started > HEADER_SECONDS
            if late and not request.headers_finished:
                channel.will_close = True
            until = getattr(channel, "lingering_until", 0.0)
            if until and now > until:
                channel.lingering_until = 0.0
                channel.will_close = True

    server.maintenance = maintenance


def make_server(app: Any, options: dict[str, Any]) -> Any:
    """waitress.create_server for a Flask app from create_app, hardened (see harden)."""
    return make_wsgi_server(
        app, app.extensions["teamindex"], options, app.extensions.get(INLINE_KEY)
    )


def make_wsgi_server(
    wsgi: Any, svc: Services, options: dict[str, Any], pre_answer: PreAnswer | None = None
) -> Any:
    """waitress.create_server for `wsgi` on `svc` (boot.serving's stack), hardened (see
    harden); `pre_answer` answers page hits on the socket thread."""
    import waitress

    from ..access.earlycheck import EarlyCredentials

    server = waitress.create_server(wsgi, **options)
    credentials = EarlyCredentials(svc.db.token_standing, svc.throttle, svc.logins)
    gate = BodyGate(lambda: svc.db.allowlist(None), svc.settings.trusted_proxy, credentials)
    harden(server, gate, pre_answer=pre_answer)
    return server
