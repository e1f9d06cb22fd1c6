"""Refusals on the headers, before any body is read (issue 10, medium 4), on a real waitress:
an unauthenticated or allowlist-denied upload is answered at once and nothing of its body is
stored; one address cannot hold every connection; a client that trickles its headers is
dropped. Every wait is bounded by a socket timeout."""

from __future__ import annotations

import base64
import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from conftest import LiveServer, add_token, add_user, basic, start_server

from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.ops import serving

FIFTY_MIB = 50 << 20


def _connect(live_server, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    host, port = live_server.host.split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))
    return sock


def _read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (it must close: Connection: close)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _post_headers(path: str, length: int, extra: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: index", f"Content-Length: {length}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    lines.append("Content-Type: multipart/form-data; boundary=x")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _refused_before_the_body(live_server, extra: dict[str, str]) -> bytes:
    """Send only the headers of a 50 MiB upload (the body never comes) and read the answer."""
    tmp = live_server.settings.tmp_dir
    before = set(tmp.iterdir())
    started = time.monotonic()
    with _connect(live_server) as sock:
        sock.sendall(_post_headers("/legacy/", FIFTY_MIB, extra))
        sock.sendall(b"x" * 65536)  # the start of the body, which must not be waited for
        answer = _read_answer(sock)
    assert time.monotonic() - started < 3.0
    assert set(tmp.iterdir()) == before  # nothing of the body was stored
    return answer


def test_upload_without_credentials_is_401_before_its_body(live_server):
    answer = _refused_before_the_body(live_server, {})
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 401 "), head
    assert 'www-authenticate: basic realm="teamindex"' in head.lower()
    assert "connection: close" in head.lower()
    assert answer.endswith(b"Invalid or missing credentials for teamindex.\n")


@pytest.mark.parametrize("credentials", ["alice", "wrong", None])
def test_address_off_the_allowlist_is_403_before_its_body(live_server, credentials):
    db = live_server.app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", None, "office", utc_now())
    extra = {}
    if credentials == "alice":
        extra = basic("alice")
    elif credentials == "wrong":
        extra = basic("alice", "not-the-password")
    answer = _refused_before_the_body(live_server, extra)
    assert answer.startswith(b"HTTP/1.1 403 Access from 127.0.0.1 is not allowed"), answer[:80]
    events = db.query_audit(since="2000-01-01", user=None, project=None, action="ip_denied")
    assert events


def test_small_anonymous_bodies_still_reach_the_app(live_server):
    """The login form has no credentials and a small body: the app answers it."""
    with _connect(live_server) as sock:
        sock.sendall(_post_headers("/legacy/", 10, {"Connection": "close"}) + b"0123456789")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 401 ")  # the app's own 401 for /legacy/


# -- credentials that cannot be right are refused on the headers too -----------------------


def _raw(authorization: str) -> dict[str, str]:
    return {"Authorization": authorization}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _dead_token(app, state: str) -> str:
    fields = {"expires": "2020-01-01T00:00:00.000000Z"} if state == "expired" else {}
    token_id, secret = add_token(app, "alice", **fields)
    if state == "revoked":
        app.extensions["teamindex"].db.revoke_token(token_id, utc_now())
    return secret


@pytest.mark.parametrize(
    "authorization",
    [
        "x",
        "Basic",
        "Basic !!!not-base64",
        "Bearer tix_abc",
        "Basic " + _b64("alice"),  # no password
        "Basic " + _b64("alice:"),
        "Basic " + _b64(":"),
        "Basic " + _b64("__token__:guess"),
        "Basic " + _b64("__token__:tix_" + "A" * 43),
        "Basic " + _b64("alice:tix_" + "A" * 43),
        "Basic " + _b64("__token__:" + basic("alice")["Authorization"]),
        "Basic \u00e9\u00e9\u00e9\u00e9",  # not ASCII: werkzeug raised, so the body was read
    ],
)
def test_credentials_that_cannot_log_in_are_401_before_the_body(live_server, authorization):
    """Made-up credentials must not buy a 50 MiB body read (the review of issue 10,
    medium 4: only the presence of the header was checked)."""
    answer = _refused_before_the_body(live_server, _raw(authorization))
    assert answer.startswith(b"HTTP/1.1 401 Invalid or missing credentials"), answer[:80]
    assert b'basic realm="teamindex"' in answer.lower()


@pytest.mark.parametrize("state", ["revoked", "expired"])
@pytest.mark.parametrize("user", ["__token__", "alice"])
def test_a_dead_token_is_refused_before_the_body_with_its_reason(live_server, state, user):
    secret = _dead_token(live_server.app, state)
    answer = _refused_before_the_body(live_server, basic(user, secret))
    assert answer.startswith(f"HTTP/1.1 401 Invalid credentials: token {state}.".encode())
    db = live_server.app.extensions["teamindex"].db
    events = db.query_audit(since="2000", user=None, project=None, action="auth_failed")
    assert [e.detail for e in events] == [f"token {state}"]


def test_an_unknown_token_refused_early_still_counts_against_the_address(live_server):
    answer = _refused_before_the_body(live_server, basic("__token__", "tix_" + "B" * 43))
    assert answer.startswith(b"HTTP/1.1 401 ")
    db = live_server.app.extensions["teamindex"].db
    events = db.query_audit(since="2000", user=None, project=None, action="auth_failed")
    assert len(events) == 1
    assert [
        (e.kind, e.subject, e.failures) for e in db.throttle_entries(now=time.time(), window=300)
    ] == [("address", "127.0.0.1", 1)]


SMALL_UPLOAD = 70 << 10  # just over the anonymous limit: the body is sent in full


def _answer_with_body(live_server, extra: dict[str, str]) -> bytes:
    """Send a whole (nonsense) multipart body just over the anonymous limit: the app's
    own answer after reading it (400 for the form), or an early refusal."""
    with _connect(live_server) as sock:
        sock.sendall(_post_headers("/legacy/", SMALL_UPLOAD, extra | {"Connection": "close"}))
        with contextlib.suppress(OSError):  # refused early: the answer is still there
            sock.sendall(b"x" * SMALL_UPLOAD)
        return _read_answer(sock)


@pytest.mark.parametrize("scope", ["read", "upload"])
@pytest.mark.parametrize("user", ["__token__", "alice"])
def test_a_live_token_reaches_the_app(live_server, scope, user):
    _id, secret = add_token(live_server.app, "alice", scope=scope)
    answer = _answer_with_body(live_server, basic(user, secret))
    # Not the gate's 401: the app's own answer (the read token's refusal, the form's 400).
    expected = b"HTTP/1.1 403 " if scope == "read" else b"HTTP/1.1 400 "
    assert answer.startswith(expected), answer[:80]


def _block_the_address(live_server, ip: str = "127.0.0.1") -> None:
    throttle = live_server.app.extensions["teamindex"].throttle
    for _ in range(throttle.policy.ip_failures):
        throttle.failure(ip, None)


def test_an_unverified_password_gets_its_body_read_while_the_address_is_not_blocked(
    live_server,
):
    """The residual risk: a password cannot be checked on the socket thread, so a wrong
    one has its body read before its 401 (the throttle bounds how many)."""
    answer = _answer_with_body(live_server, basic("alice", "not-her-password"))
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]
    assert _answer_with_body(live_server, basic("alice")).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_an_unverified_password_from_a_blocked_address_is_429_before_the_body(
    live_server, password
):
    _block_the_address(live_server)
    sent = basic("alice") if password == "right" else basic("alice", "not-her-password")
    answer = _refused_before_the_body(live_server, sent)
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 429 Too many failed logins; retry in "), head
    assert int(head.lower().split("retry-after: ")[1].split("\r\n")[0]) > 0


def test_a_password_verified_here_before_the_block_keeps_uploading(live_server):
    """Logins verified from this address before it was blocked keep working (issue 10,
    high 2); the gate asks the same LoginCache as the app."""
    authorization = basic("alice")["Authorization"]
    with _connect(live_server) as sock:
        sock.sendall(
            f"GET /simple/ HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert _read_answer(sock).startswith(b"HTTP/1.1 200 ")
    _block_the_address(live_server)
    assert _answer_with_body(live_server, basic("alice")).startswith(b"HTTP/1.1 400 ")
    answer = _answer_with_body(live_server, basic("bob"))
    assert answer.startswith(b"HTTP/1.1 429 "), answer[:80]


@pytest.fixture
def slow_clients(live_server) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_one_address_cannot_take_every_connection(live_server, slow_clients):
    """110 connections from 127.0.0.2 trickling headers (waitress' connection_limit is 100):
    a client at 127.0.0.1 is still answered quickly."""
    for _ in range(110):
        try:
            sock = _connect(live_server, "127.0.0.2", timeout=2.0)
            sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            break  # refused or reset: fine, that is the cap working
        slow_clients.append(sock)
    time.sleep(0.5)
    started = time.monotonic()
    with _connect(live_server, "127.0.0.1", timeout=3.0) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert time.monotonic() - started < 1.0


def test_trickled_headers_are_cut_off(live_server, monkeypatch, slow_clients):
    monkeypatch.setattr(serving, "HEADER_SECONDS", 1.0)
    sock = _connect(live_server, timeout=8.0)
    slow_clients.append(sock)
    sock.sendall(b"GET /simple/ HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(6):  # a header line a second keeps the connection "active"
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
        time.sleep(1.0)
    sock.settimeout(5.0)
    assert _read_answer(sock) == b""  # closed without an answer
    assert time.monotonic() - started < 8.0


def test_address_counts_cap_and_release():
    counts = serving.AddressCounts(2)
    assert counts.enter("a") and counts.enter("a") and not counts.enter("a")
    assert counts.enter("b")
    counts.leave("a")
    assert counts.enter("a")


# -- the per-address cap: an IPv6 /64 is one client; only the trusted proxy is exempt --------


def _admitted(app, peers: list[str], trusted_proxy: str = "", cap: int = 2) -> int:
    """How many connections from `peers` a hardened server keeps open (cap per address)."""
    import waitress

    server = waitress.create_server(app, host="127.0.0.1", port=0)
    serving.harden(server, serving.BodyGate(lambda: [], trusted_proxy), per_address=cap)
    pairs = [socket.socketpair() for _ in peers]
    try:
        channels = [
            server.channel_class(server, a, (peer, 40000), server.adj, {})
            for peer, (a, _b) in zip(peers, pairs, strict=True)
        ]
        return sum(1 for channel in channels if channel.counted)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        server.close()


@pytest.mark.parametrize(
    ("peers", "admitted"),
    [
        ([f"2001:db8::{n + 1}" for n in range(6)], 2),  # one /64, six addresses
        ([f"2001:db8:0:{n}::1" for n in range(6)], 6),  # six /64s
        (["::ffff:192.0.2.1", "192.0.2.1", "::ffff:192.0.2.1"], 2),  # one IPv4 client
    ],
)
def test_the_connection_cap_keys_on_the_throttle_address(app, peers, admitted):
    assert _admitted(app, peers) == admitted


def test_only_the_trusted_proxy_is_exempt_from_the_cap(app):
    assert _admitted(app, ["192.0.2.5"] * 6, trusted_proxy="192.0.2.5") == 6
    assert _admitted(app, ["192.0.2.9"] * 6, trusted_proxy="192.0.2.5") == 2
    assert _admitted(app, ["192.0.2.9"] * 6, trusted_proxy="*") == 6  # every peer is a proxy


@pytest.fixture
def proxied_server(settings) -> Iterator[LiveServer]:
    """A live server started with --trusted-proxy 127.0.0.2."""
    proxied = replace(settings, trusted_proxy="127.0.0.2")
    app = create_app(proxied)
    add_user(app, "alice")
    live, running = start_server(app, proxied)
    yield live
    running.stop()
    app.extensions["teamindex"].db.close()


@pytest.mark.parametrize("credentials", [True, False])
def test_with_a_trusted_proxy_other_peers_still_get_the_early_403(proxied_server, credentials):
    """--trusted-proxy 127.0.0.2: a client connecting directly from 127.0.0.1, off the
    global list, is refused on its headers like without a proxy."""
    db = proxied_server.app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", None, "office", utc_now())
    answer = _refused_before_the_body(proxied_server, basic("alice") if credentials else {})
    assert answer.startswith(b"HTTP/1.1 403 Access from 127.0.0.1 is not allowed"), answer[:80]


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [("10.1.2.3", 0), ("192.0.2.1", 403), ("10.9.9.9, 192.0.2.1", 403), (None, 403)],
)
def test_the_trusted_proxy_gate_checks_the_forwarded_client(forwarded, status):
    """Behind the proxy the client is the one waitress hands the app (the last
    X-Forwarded-For hop); without the header it is the proxy itself."""
    gate = serving.BodyGate(lambda: ["10.0.0.0/8"], "192.0.2.5")
    headers = {"AUTHORIZATION": basic("alice")["Authorization"]}
    if forwarded is not None:
        headers["X_FORWARDED_FOR"] = forwarded
    assert gate.refusal("192.0.2.5", headers, 10, False) == status
