"""The hot path answers only what Flask would answer, byte for byte, and declines the rest.

Each case calls the hot layer and the Flask app behind it with the same request: when the
hot path answers, status, headers and body must equal Flask's; when it must not answer,
`answer()` is None and Flask's status is the one the access rules give.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest
from builders import make_sdist, make_wheel
from conftest import PASSWORD, add_token, add_user, basic, page_requests
from flask import Flask
from uploading import upload
from werkzeug.test import EnvironBuilder, run_wsgi_app

from teamindex.access.auth import hash_password
from teamindex.api.hotpath import HotReads
from teamindex.clock import utc_now
from teamindex.db import Database
from teamindex.ops.metrics import collectors

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"  # noqa: E501
ROOT, PAGE = "/simple/", "/simple/foo-bar/"

Reply = tuple[str, list[tuple[str, str]], bytes]


def hot_layer(app: Flask) -> HotReads:
    layer = app.wsgi_app.app  # RequestLog(HotReads(Flask))
    assert isinstance(layer, HotReads)
    return layer


def environ(path: str, headers: dict[str, str], **options: Any) -> dict[str, Any]:
    """A request as the Flask test client sends it (from 127.0.0.1 unless told otherwise)."""
    options.setdefault("environ_base", {"REMOTE_ADDR": "127.0.0.1"})
    return EnvironBuilder(path=path, headers=headers, **options).get_environ()


def call(wsgi: Any, path: str, headers: dict[str, str], **options: Any) -> Reply:
    app_iter, status, sent = run_wsgi_app(wsgi, environ(path, headers, **options), buffered=True)
    return status, sorted(sent.to_wsgi_list()), b"".join(app_iter)


def compare(app: Flask, path: str, headers: dict[str, str], **options: Any) -> tuple[bool, Reply]:
    """(did the hot path answer, Flask's reply); asserts both replies are equal."""
    layer = hot_layer(app)
    answered = layer.answer(environ(path, headers, **options)) is not None
    reference = call(layer.app, path, headers, **options)
    through_layer = call(layer, path, headers, **options)
    assert through_layer == reference, (path, headers)
    return answered, reference


def status_of(app: Flask, path: str, headers: dict[str, str], **options: Any) -> tuple[bool, int]:
    """(did the hot path answer, Flask's status code)."""
    answered, (status, _headers, _body) = compare(app, path, headers, **options)
    return answered, int(status.split(" ", 1)[0])


@pytest.fixture
def published(app, client, tmp_path) -> Flask:
    for path in (make_wheel(tmp_path, "Foo_Bar", "1.0"), make_sdist(tmp_path, "Foo_Bar", "1.0")):
        assert upload(client, path).status == "200 OK"
    assert upload(client, make_wheel(tmp_path, "other", "2.0"), "bob").status == "200 OK"
    return app


def test_hot_replies_equal_flask_replies(published, client):
    _id, secret = add_token(published, "alice", scope="read")
    credentials = {
        "alice": basic("alice"),
        "root": basic("root"),
        "token": basic("__token__", secret),
    }
    accepts = (None, PIP, "text/html", V1_HTML)
    for case, path, headers in page_requests(credentials, (ROOT, PAGE), accepts, (None, "gzip")):
        first = client.get(path, headers=headers)  # Flask: remembers, renders
        assert first.status_code == 200
        answered, (status, sent, body) = compare(published, path, headers)
        assert answered, case
        assert status == "200 OK" and body == first.data, case
        assert ("ETag", first.headers["ETag"]) in sent, case
        conditional = headers | {"If-None-Match": first.headers["ETag"]}
        answered, (status, _sent, body) = compare(published, path, conditional)
        assert answered and status == "304 NOT MODIFIED" and body == b"", case


def test_hot_path_renders_pages_at_the_current_serial(published, client, tmp_path):
    """A worker's first request for a page (issue 14: a fresh server's first) is verified
    and rendered on the hot path; a hit renders nothing; a new upload renders it anew."""
    headers = basic("alice") | {"Accept": JSON}
    pages = published.extensions["teamindex"].pages
    builds = pages.builds
    assert status_of(published, PAGE, headers) == (True, 200)  # not seen, not rendered yet
    assert pages.builds == builds + 1
    assert status_of(published, PAGE, headers) == (True, 200)
    assert pages.builds == builds + 1
    assert upload(client, make_wheel(tmp_path, "Foo_Bar", "1.1")).status == "200 OK"
    answered, (_status, _sent, body) = compare(published, PAGE, headers)
    assert answered and b"foo_bar-1.1-py3-none-any.whl" in body
    assert pages.builds == builds + 2


def test_pages_rendered_on_the_hot_path_equal_flask_renderings(published, client):
    """The same bytes whichever path renders a page: each is rendered with empty caches
    (pages and logins: a fresh worker's), once by the hot path and once by Flask, for every
    reader and content type."""
    _id, secret = add_token(published, "alice", scope="read", projects=["other"])
    db = published.extensions["teamindex"].db
    assert db.set_visibility("foo-bar", "restricted")
    pages, logins = (
        published.extensions["teamindex"].pages,
        published.extensions["teamindex"].logins,
    )
    layer = hot_layer(published)
    readers = {name: basic(name) for name in ("alice", "bob", "root")}
    readers["token"] = basic("__token__", secret)
    paths, accepts = (ROOT, PAGE, "/simple/other/"), (None, PIP, "text/html", V1_HTML, JSON)
    for case, path, headers in page_requests(readers, paths, accepts):
        pages.clear()
        logins.clear()
        answered = layer.answer(environ(path, headers)) is not None
        hot = call(layer, path, headers)
        pages.clear()
        logins.clear()
        flask = call(layer.app, path, headers)
        assert hot == flask, case
        assert answered == (flask[0] == "200 OK"), (case, flask[0])


@pytest.mark.parametrize(
    ("path", "extra", "options", "status"),
    [
        (PAGE, {}, {"method": "HEAD"}, 200),
        (PAGE, {}, {"query_string": "format=application/vnd.pypi.simple.v1%2Bjson"}, 200),
        ("/simple/Foo_Bar/", {}, {}, 301),
        ("/simple/foo_bar/", {}, {}, 301),
        ("/simple/nothing-here/", {}, {}, 404),
        (PAGE, {"Accept": "image/png"}, {}, 406),
        (ROOT, {"Accept": "image/png"}, {}, 406),
        ("/legacy/+simple/foo-bar/", {}, {}, 200),
    ],
)
def test_declines_what_flask_must_answer(published, client, path, extra, options, status):
    client.get(ROOT, headers=basic("alice"))  # alice's login is known
    assert status_of(published, path, basic("alice") | extra, **options) == (False, status)


def test_declines_unknown_and_missing_credentials(published, client):
    client.get(ROOT, headers=basic("alice"))
    assert status_of(published, ROOT, {}) == (False, 401)
    wrong = basic("alice", "wrong-password")
    for _ in range(2):  # a failure is never remembered
        assert status_of(published, ROOT, wrong) == (False, 401)
    other_address = {"environ_base": {"REMOTE_ADDR": "127.0.0.2"}}  # verified anew there
    assert status_of(published, ROOT, basic("alice"), **other_address) == (True, 200)


def test_restricted_project_stays_hidden(published, client):
    db = published.extensions["teamindex"].db
    assert db.set_visibility("foo-bar", "restricted")
    for user in ("alice", "bob"):
        client.get(ROOT, headers=basic(user))
        client.get(PAGE, headers=basic(user))
    assert status_of(published, PAGE, basic("alice")) == (True, 200)  # the owner
    assert status_of(published, PAGE, basic("bob")) == (False, 404)
    _answered, (_status, _sent, bob_root) = compare(published, ROOT, basic("bob"))
    assert b"foo-bar" not in bob_root and b"other" in bob_root


def test_token_limited_to_projects_sees_only_those(published, client):
    _id, secret = add_token(published, "alice", scope="read", projects=["other"])
    token = basic("__token__", secret)
    assert client.get(ROOT, headers=token).status_code == 200
    answered, (_status, _sent, body) = compare(published, ROOT, token)
    assert answered and b"other" in body and b"foo-bar" not in body
    client.get(PAGE, headers=token)
    assert status_of(published, PAGE, token) == (False, 404)


def change_password_elsewhere(app: Flask, user: str) -> None:
    """What `teamindex passwd` in another process does: its own connection, its own commit."""
    elsewhere = Database(app.extensions["teamindex"].settings.database)
    try:
        with elsewhere.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?",
                (hash_password("a-new-password", "pbkdf2:sha256:1000"), user),
            )
    finally:
        elsewhere.close()


def test_auth_changes_take_effect_on_the_next_request(published, client):
    _id, secret = add_token(published, "bob", scope="read")
    token = basic("__token__", secret)
    for login in (basic("alice"), token, basic("root")):
        client.get(ROOT, headers=login)
        assert status_of(published, ROOT, login) == (True, 200)
    db = published.extensions["teamindex"].db

    change_password_elsewhere(published, "alice")
    assert status_of(published, ROOT, basic("alice")) == (False, 401)

    assert db.revoke_token(_id, utc_now())
    assert status_of(published, ROOT, token) == (False, 401)

    assert client.get(ROOT, headers=basic("root")).status_code == 200
    db.add_allow("10.0.0.0/8", None, "office", utc_now())
    assert status_of(published, ROOT, basic("root")) == (False, 403)


def test_admin_demotion_changes_the_listing_at_once(published, client):
    db = published.extensions["teamindex"].db
    assert db.set_visibility("foo-bar", "restricted")
    client.get(ROOT, headers=basic("root"))
    answered, (_status, _sent, body) = compare(published, ROOT, basic("root"))
    assert answered and b"foo-bar" in body
    assert db.set_admin("root", False)
    answered, (_status, _sent, body) = compare(published, ROOT, basic("root"))
    assert not answered and b"foo-bar" not in body


def test_blocked_address_keeps_verified_logins_and_refuses_new_ones(published, client):
    """Issue 10: a block stops new verifications from the address; a login this server
    verified from it before keeps working on both paths (hot and Flask)."""
    client.get(ROOT, headers=basic("alice"))
    throttle = published.extensions["teamindex"].throttle
    for _ in range(throttle.policy.ip_failures):
        throttle.failure("127.0.0.1", None)
    assert status_of(published, ROOT, basic("alice")) == (True, 200)
    assert status_of(published, PAGE, basic("alice")) == (True, 200)  # rendered there too
    add_user(published, "carol")
    assert status_of(published, ROOT, basic("carol")) == (False, 429)  # a new verification
    elsewhere = {"environ_base": {"REMOTE_ADDR": "127.0.0.2"}}
    assert status_of(published, ROOT, basic("alice"), **elsewhere) == (True, 200)


def test_token_use_is_recorded_from_the_hot_path(published, client):
    token_id, secret = add_token(published, "alice", scope="read")
    token = basic("__token__", secret)
    client.get(ROOT, headers=token)
    svc = published.extensions["teamindex"]
    touched: list[tuple[int, str]] = []
    svc.token_touch.write = lambda token_id, _now, ip: touched.append((token_id, ip))
    svc.token_touch._last.clear()  # as if the last write was over a minute ago
    assert status_of(published, ROOT, token)[0]
    assert touched == [(token_id, "127.0.0.1")]


def test_hot_answers_are_counted_and_logged(published, client, caplog):
    client.get(PAGE, headers=basic("alice"))
    requests = collectors(published).requests.labels("/simple/<name>/", "GET", "200")
    before = requests._value.get()
    with (
        caplog.at_level(logging.INFO, logger="teamindex.access"),
        client.get(PAGE, headers=basic("alice")) as response,
    ):
        assert response.status_code == 200  # leaving the block closes it: the log line
    assert hot_layer(published).answer(environ(PAGE, basic("alice"))) is not None
    assert requests._value.get() == before + 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "teamindex.access"]
    assert ' alice "GET /simple/foo-bar/" 200 ' in line


def test_auth_serial_moves_with_logins_not_with_token_use(app):
    db = app.extensions["teamindex"].db
    token_id, _secret = add_token(app, "alice")
    before = db.serials()[1]
    db.touch_token(token_id, utc_now(), "127.0.0.1")
    assert db.serials()[1] == before
    db.set_password("alice", hash_password(PASSWORD + "!", "pbkdf2:sha256:1000"))
    db.add_allow("127.0.0.0/8", db.get_user("bob").id, "", utc_now())
    db.revoke_token(token_id, utc_now())
    assert db.serials()[1] == before + 3


def test_a_failing_hot_path_leaves_the_request_to_flask(published, client, monkeypatch, caplog):
    client.get(ROOT, headers=basic("alice"))
    db = published.extensions["teamindex"].db

    def broken() -> tuple[int, int]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "serials", broken)
    with caplog.at_level(logging.ERROR, logger="teamindex"):
        response = client.get(ROOT, headers=basic("alice"))
    assert response.status_code == 200 and b"foo-bar" in response.data
    assert any("hot path failed" in r.getMessage() for r in caplog.records)


def test_a_login_is_checked_once_whichever_path_answers(published, client):
    """The hot path verifies a login it has not seen as Flask would, and leaves the outcome
    in the environ for Flask when it declines the request: a refusal is audited and counted
    by the throttle once, with the words Flask gives it, never twice."""
    svc = published.extensions["teamindex"]
    token_id, secret = add_token(published, "alice", scope="read")
    assert svc.db.revoke_token(token_id, utc_now())
    failures: list[str] = []
    counted = svc.throttle.failure
    svc.throttle.failure = lambda ip, *args, **kwargs: (
        failures.append(ip) or counted(ip, *args, **kwargs)
    )
    layer = hot_layer(published)
    cases = [
        (basic("alice", "wrong-password"), "401 Invalid or missing credentials for teamindex.", 1),
        (basic("__token__", secret), "401 Invalid credentials: token revoked.", 0),
        (basic("__token__", "tix_" + "x" * 40), "401 Invalid or missing credentials", 1),
    ]
    for headers, status, counts in cases:
        for wsgi in (layer.app, layer):  # Flask alone, then the hot path in front of it
            audited = len(svc.db.query_audit(since="", action="auth_failed"))
            del failures[:]
            reply_status, _sent, body = call(wsgi, ROOT, headers)
            assert reply_status.startswith(status), (headers, wsgi)
            assert body.startswith(status.split(" ", 1)[1].encode())
            assert len(svc.db.query_audit(since="", action="auth_failed")) == audited + 1
            assert len(failures) == counts, (headers, wsgi)


def test_a_login_check_that_fails_on_the_hot_path_is_answered_by_flask_as_its_own(published):
    """A database busy past its timeout while the hot path verifies a new login: Flask
    answers that very failure (503, Retry-After), and does not check the login again."""
    from teamindex.db import Busy

    svc = published.extensions["teamindex"]
    _id, secret = add_token(published, "alice", scope="read")
    calls: list[str] = []

    def busy(digest: str) -> object:
        calls.append(digest)
        raise Busy("database is locked")

    svc.db.token_login = busy
    status, sent, body = call(hot_layer(published), ROOT, basic("__token__", secret))
    assert status.startswith("503") and "Retry-After" in dict(sent)
    assert body.startswith(b"The index database is busy")
    assert len(calls) == 1


def test_page_status_lines_are_werkzeugs() -> None:
    """The hot path writes the status line itself (it loads no werkzeug): the same bytes."""
    from werkzeug.http import HTTP_STATUS_CODES

    from teamindex.api.hotpath import PAGE_STATUS_LINES

    for code, line in PAGE_STATUS_LINES.items():
        assert line == f"{code} {HTTP_STATUS_CODES[code].upper()}"
