"""Page hits answered on waitress' socket thread (ops/serving.py) send the same bytes as
the worker threads, and only page hits are answered there.

Over real sockets: each request is sent once on a server that answers on the socket
thread and once on one built without it (harden() without pre_answer), and the raw
replies must match (status line, headers but Date, body). Which thread answered is read
from waitress' task dispatcher: a request it never saw was answered on the socket thread.
"""

from __future__ import annotations

import http.client
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from builders import make_wheel
from conftest import (
    USERS,
    add_token,
    add_user,
    basic,
    page_requests,
    start_server,
    worker_tasks,
)
from flask import Flask
from uploading import upload

from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.config import Settings
from teamindex.ops import serving
from teamindex.ops.metrics import collectors

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"  # noqa: E501

WireReply = tuple[int, str, list[tuple[str, str]], bytes]


def fetch(url: str, path: str, headers: dict[str, str]) -> WireReply:
    """One GET on a new connection; the reply as it came, Date left out (it ticks)."""
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        sent = [(k, v) for k, v in response.getheaders() if k.lower() != "date"]
        return response.status, response.reason, sent, body
    finally:
        connection.close()


@pytest.fixture
def published(app: Flask, client, tmp_path) -> Flask:
    assert upload(client, make_wheel(tmp_path, "Foo_Bar", "1.0")).status == "200 OK"
    assert upload(client, make_wheel(tmp_path, "other", "2.0"), "bob").status == "200 OK"
    return app


@pytest.fixture
def servers(published: Flask, settings: Settings, monkeypatch) -> Iterator[Any]:
    """(inline server, its dispatcher's task list, server without inline answers)."""
    if settings.database_url:
        pytest.skip("answers on the socket thread are for SQLite (one local read)")
    inline, inline_running = start_server(published, settings)
    tasks = worker_tasks(inline_running)
    # The same app behind a server built as before this change: no pre_answer.
    harden = serving.harden
    monkeypatch.setattr(
        serving, "harden", lambda server, gate, **_kw: harden(server, gate, pre_answer=None)
    )
    plain, plain_running = start_server(published, settings)
    monkeypatch.setattr(serving, "harden", harden)
    yield inline, tasks, plain
    for running in (inline_running, plain_running):
        running.stop()


def test_page_hits_are_answered_on_the_socket_thread_with_the_same_bytes(servers, published):
    inline, tasks, plain = servers
    _id, secret = add_token(published, "alice", scope="read")
    logins = {"alice": basic("alice"), "root": basic("root"), "token": basic("__token__", secret)}
    paths, accepts = ("/simple/", "/simple/foo-bar/"), (None, PIP, "text/html")
    for case, path, headers in page_requests(logins, paths, accepts, (None, "gzip")):
        first = fetch(inline.url, path, headers)  # verified and rendered on a worker
        assert first[0] == 200, case
        before = len(tasks)
        again = fetch(inline.url, path, headers)
        assert len(tasks) == before, case  # no worker saw it
        assert again == first == fetch(plain.url, path, headers), case
        etag = next(v for k, v in first[2] if k.lower() == "etag")
        conditional = headers | {"If-None-Match": etag}
        not_modified = fetch(inline.url, path, conditional)
        assert len(tasks) == before, case
        assert not_modified == fetch(plain.url, path, conditional), case
        assert not_modified[0] == 304 and not_modified[3] == b"", case


def test_everything_else_goes_to_the_workers(servers, published):
    inline, tasks, plain = servers
    page = "/simple/foo-bar/"
    fetch(inline.url, page, basic("alice"))  # a verified login, a rendered page
    wheel = (
        published.extensions["teamindex"]
        .db.project_files(published.extensions["teamindex"].db.get_project("foo-bar"))[0]
        .filename
    )
    cases = [
        ("/simple/foo-bar/", {}),  # no credentials: 401
        ("/simple/foo-bar/", basic("alice", "wrong-password")),
        ("/simple/Foo_Bar/", basic("alice")),  # not normalized: Flask's 301
        ("/simple/foo-bar/?x=1", basic("alice")),
        ("/simple/no-such/", basic("alice")),
        ("/simple/foo-bar/", basic("alice") | {"Accept": "application/x-nothing"}),  # 406
        (f"/files/foo-bar/{wheel}", basic("alice")),  # downloads stay off the socket thread
        ("/healthz", {}),
    ]
    for path, headers in cases:
        for _attempt in range(2):
            before = len(tasks)
            reply = fetch(inline.url, path, headers)
            assert len(tasks) == before + 1, (path, reply[:2])
            assert reply == fetch(plain.url, path, headers), path


def test_a_page_changed_by_another_request_is_never_sent_stale(servers, published, tmp_path):
    """The decision is the statement's: an upload in between moves the serial, and the
    next request goes to Flask, which renders the new page."""
    inline, tasks, _plain = servers
    page = "/simple/foo-bar/"
    fetch(inline.url, page, basic("alice"))
    before = fetch(inline.url, page, basic("alice"))
    client = published.test_client()
    assert upload(client, make_wheel(tmp_path, "Foo_Bar", "2.0")).status == "200 OK"
    count = len(tasks)
    after = fetch(inline.url, page, basic("alice"))
    assert len(tasks) == count + 1  # Flask rendered it
    assert b"foo_bar-2.0" in after[3] and b"foo_bar-2.0" not in before[3]
    count = len(tasks)
    assert fetch(inline.url, page, basic("alice")) == after
    assert len(tasks) == count  # and the new page is a socket-thread hit again


def test_a_failing_decision_leaves_the_request_to_the_workers(
    servers, published, monkeypatch, caplog
):
    inline, tasks, _plain = servers
    good = fetch(inline.url, "/simple/", basic("alice"))
    db = published.extensions["teamindex"].db

    def broken() -> tuple[int, int]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "serials", broken)  # the hot path's statement; Flask's differ
    before = len(tasks)
    with caplog.at_level(logging.ERROR, logger="teamindex"):
        assert fetch(inline.url, "/simple/", basic("alice")) == good
    assert len(tasks) == before + 1
    assert any("hot path failed" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert fetch(inline.url, "/simple/", basic("alice")) == good
    assert len(tasks) == before + 1


def test_pipelined_requests_are_answered_in_order(servers, published):
    """Several requests in one packet: the first may be answered on the socket thread, the
    rest queue behind it; each gets its own answer, in order."""
    inline, _tasks, _plain = servers
    login = basic("alice")["Authorization"]
    fetch(inline.url, "/simple/", basic("alice"))
    fetch(inline.url, "/simple/foo-bar/", basic("alice"))
    host, port = inline.url.removeprefix("http://").split(":")
    requests = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {login}\r\n\r\n".encode()
        for path in ("/simple/foo-bar/", "/simple/", "/simple/foo-bar/", "/healthz")
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(requests)
        received = b""
        while received.count(b"HTTP/1.1 200") < 4 or not received.endswith(b"ok\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    starts = [received.find(b"foo_bar-1.0"), received.find(b'href="other/"')]
    assert received.count(b"HTTP/1.1 200 OK") == 4
    assert 0 < starts[0] < starts[1], received[:300]


def test_behind_a_trusted_proxy_the_decision_sees_the_forwarded_address(
    settings: Settings, tmp_path
):
    if settings.database_url:
        pytest.skip("answers on the socket thread are for SQLite (one local read)")
    """The socket thread decides on the address the app sees: a login verified for one
    forwarded address is not a hit for another, and an address outside the allowlist is
    refused (by Flask) however the login was cached."""
    own = replace(
        settings, data_dir=settings.data_dir.parent / "proxied", trusted_proxy="127.0.0.1"
    )
    app = create_app(own)
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    client = app.test_client()
    assert upload(client, make_wheel(tmp_path, "Foo_Bar", "1.0")).status == "200 OK"
    live, running = start_server(app, own)
    tasks = worker_tasks(running)
    try:
        page = "/simple/foo-bar/"
        here = basic("alice") | {"X-Forwarded-For": "10.1.2.3"}
        there = basic("alice") | {"X-Forwarded-For": "10.9.9.9"}
        assert fetch(live.url, page, here)[0] == 200
        before = len(tasks)
        assert fetch(live.url, page, here)[0] == 200
        assert len(tasks) == before  # the same forwarded address: a hit
        assert fetch(live.url, page, there)[0] == 200
        assert len(tasks) == before + 1  # another address: verified again, by Flask
        db = app.extensions["teamindex"].db
        db.add_allow("10.1.0.0/16", None, "office", utc_now())
        before = len(tasks)
        assert fetch(live.url, page, there)[0] == 403
        assert fetch(live.url, page, here)[0] == 200
    finally:
        running.stop()


def test_worker_tasks_sees_every_request_without_inline_answers(published, settings, monkeypatch):
    """The helper the tests above rely on counts what reaches the workers."""
    harden = serving.harden
    monkeypatch.setattr(
        serving, "harden", lambda server, gate, **_kw: harden(server, gate, pre_answer=None)
    )
    live, running = start_server(published, settings)
    tasks = worker_tasks(running)
    try:
        for _ in range(3):
            assert fetch(live.url, "/simple/", basic("alice"))[0] == 200
        assert len(tasks) == 3
    finally:
        running.stop()


def test_proxied_page_hits_are_answered_on_the_socket_thread(
    proxy, fake_upstream, tmp_path, settings
):
    if settings.database_url:
        pytest.skip("answers on the socket thread are for SQLite (one local read)")
    fake_upstream.publish(tmp_path / "up", "pub-proj", "1.0")
    app = proxy()
    live, running = start_server(app, app.extensions["teamindex"].settings)
    tasks = worker_tasks(running)
    try:
        headers = basic("alice") | {"Accept": PIP, "Accept-Encoding": "gzip"}
        first = fetch(live.url, "/simple/pub-proj/", headers)
        assert first[0] == 200 and len(tasks) == 1
        assert fetch(live.url, "/simple/pub-proj/", headers) == first
        assert len(tasks) == 1
    finally:
        running.stop()


def test_a_login_due_for_its_record_is_answered_by_a_worker(servers, published):
    """Once a minute a hit writes the token's last use and the login's address (_admit):
    that write may wait for the database's write lock, so a worker sends that answer (the
    hot path's still, not Flask's), and the socket thread never writes."""
    inline, tasks, _plain = servers
    token_id, secret = add_token(published, "alice", scope="read")
    token = basic("__token__", secret)
    first = fetch(inline.url, "/simple/", token)
    svc = published.extensions["teamindex"]
    touched: list[tuple[int, str, str]] = []
    svc.token_touch.write = lambda token_id, _now, ip: touched.append(
        (token_id, ip, threading.current_thread().name)
    )
    svc.token_touch._last.clear()  # as if the last write was over a minute ago
    renders = svc.pages.builds
    before = len(tasks)
    assert fetch(inline.url, "/simple/", token) == first
    assert len(tasks) == before + 1 and svc.pages.builds == renders
    assert [(i, ip) for i, ip, _thread in touched] == [(token_id, "127.0.0.1")]
    assert touched[0][2] != "waitress"  # the socket thread's name (conftest.start_server)
    assert fetch(inline.url, "/simple/", token) == first
    assert len(tasks) == before + 1 and len(touched) == 1  # recorded: a socket-thread hit


def test_socket_thread_answers_are_counted_and_logged(servers, published, caplog):
    inline, tasks, _plain = servers
    page = "/simple/foo-bar/"
    fetch(inline.url, page, basic("alice"))
    requests = collectors(published).requests.labels("/simple/<name>/", "GET", "200")
    before, count = requests._value.get(), len(tasks)
    gzipped = basic("alice") | {"Accept-Encoding": "gzip"}  # a size of its own in the log
    with caplog.at_level(logging.INFO, logger="teamindex.access"):
        reply = fetch(inline.url, page, gzipped)
        # The line is written once the body is handed over, which may be after the client
        # has read it: wait for it, boundedly.
        wanted = f' alice "GET {page}" 200 {len(reply[3])} '
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "teamindex.access"]
            if any(wanted in line for line in lines):
                break
            time.sleep(0.01)
    assert any(wanted in line for line in lines), lines
    assert len(tasks) == count
    assert requests._value.get() == before + 1
