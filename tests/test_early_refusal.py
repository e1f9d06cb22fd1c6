"""Refusals on the headers, before any body is read (issue 10, medium 4), on a real waitress:
an unauthenticated or allowlist-denied upload is answered at once and nothing of its body is
stored; one address cannot hold every connection; a client that trickles its headers is
dropped. Every wait is bounded by a socket timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from conftest import basic

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
