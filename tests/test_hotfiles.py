"""Downloads on the hot path answer only what Flask would answer, byte for byte, and decline
the rest (issue 14). As in test_hotpath: each request goes to the hot layer and to the Flask
app behind it; when the hot path answers, status, headers and body equal Flask's (the Date
header's value aside, which each stamps itself); when it must not, it declines and Flask's
status is the one the access rules give.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from builders import make_sdist, make_wheel
from conftest import add_token, add_user, basic
from flask import Flask
from test_hotpath import call, change_password_elsewhere, environ, hot_layer
from uploading import upload

from teamindex.api.hotfiles import answer_download
from teamindex.clock import utc_now
from teamindex.ops.metrics import collectors

WHEEL = "/files/foo-bar/foo_bar-1.0-py3-none-any.whl"
SDIST = "/files/foo-bar/foo_bar-1.0.tar.gz"
METADATA = WHEEL + ".metadata"
OTHER = "/files/other/other-2.0-py3-none-any.whl"

Reply = tuple[str, list[tuple[str, str]], bytes]


def dated(reply: Reply) -> Reply:
    """The reply with the Date header's value (if any: not on Flask's errors) blanked."""
    status, headers, body = reply
    assert [name for name, _value in headers].count("Date") <= 1, headers
    return status, [(n, "-" if n == "Date" else v) for n, v in headers], body


def answered(app: Flask, path: str, headers: dict[str, str], **options: Any) -> bool:
    found = answer_download(app.extensions["teamindex"], environ(path, headers, **options))
    if found is not None and found.body is not None:
        found.body.close()
    return found is not None


def compare(app: Flask, path: str, headers: dict[str, str], **options: Any) -> tuple[bool, Reply]:
    """(did the hot path answer, Flask's reply); asserts both replies are equal."""
    layer = hot_layer(app)
    hot = answered(app, path, headers, **options)
    reference = dated(call(layer.app, path, headers, **options))
    through_layer = dated(call(layer, path, headers, **options))
    assert through_layer == reference, (path, headers)
    return hot, reference


def status_of(app: Flask, path: str, headers: dict[str, str], **options: Any) -> tuple[bool, int]:
    hot, (status, _headers, _body) = compare(app, path, headers, **options)
    return hot, int(status.split(" ", 1)[0])


def known(client, *logins: dict[str, str]) -> None:
    """Let Flask verify (and the login cache remember) each login from 127.0.0.1."""
    for login in logins:
        assert client.get("/simple/", headers=login).status_code == 200


@pytest.fixture
def published(app, client, tmp_path) -> Flask:
    for path in (make_wheel(tmp_path, "Foo_Bar", "1.0"), make_sdist(tmp_path, "Foo_Bar", "1.0")):
        assert upload(client, path).status == "200 OK"
    assert upload(client, make_wheel(tmp_path, "other", "2.0"), "bob").status == "200 OK"
    return app


def test_hot_downloads_equal_flask_downloads(published, client):
    _id, secret = add_token(published, "bob", scope="read")
    logins = {"alice": basic("alice"), "bob": basic("bob"), "root": basic("root")}
    logins["token"] = basic("__token__", secret)
    known(client, *logins.values())
    for who, login in logins.items():
        for path in (WHEEL, SDIST, METADATA, OTHER):
            case = (who, path)
            hot, (status, sent, body) = compare(published, path, login)
            assert hot and status == "200 OK", case
            with client.get(path, headers=login) as response:
                assert body == response.data and body, case
            headers = dict(sent)
            assert headers["X-Content-Type-Options"] == "nosniff", case
            assert headers["Accept-Ranges"] == "bytes" and "Date" in headers, case
            assert headers["Content-Length"] == str(len(body)), case
            etag, modified = headers["ETag"], headers["Last-Modified"]
            for conditional in (
                {"If-None-Match": etag},
                {"If-None-Match": f'"other", W/{etag}'},
                {"If-Modified-Since": modified},
                {"If-Modified-Since": modified, "If-None-Match": etag},
            ):
                hot, (status, sent, body) = compare(published, path, login | conditional)
                assert hot and status == "304 NOT MODIFIED" and body == b"", (case, conditional)
                assert ("ETag", etag) in sent and "Content-Length" not in dict(sent)
            for changed in (
                {"If-None-Match": '"other"'},
                {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
            ):
                hot, (status, _sent, _body) = compare(published, path, login | changed)
                assert hot and status == "200 OK", (case, changed)


@pytest.mark.parametrize(
    ("path", "extra", "options", "status"),
    [
        (WHEEL, {}, {"method": "HEAD"}, 200),
        (WHEEL, {"Range": "bytes=0-9"}, {}, 206),
        (WHEEL, {"Range": "bytes=999999-"}, {}, 416),
        (WHEEL, {"If-Range": '"x"', "Range": "bytes=0-9"}, {}, 200),
        (WHEEL, {"If-Match": '"x"', "If-None-Match": '"x"'}, {}, 412),
        (WHEEL, {}, {"query_string": "x=1"}, 200),
        ("/files/Foo_Bar/foo_bar-1.0-py3-none-any.whl", {}, {}, 404),
        ("/files/other/foo_bar-1.0-py3-none-any.whl", {}, {}, 404),
        ("/files/foo-bar/foo_bar-9.9-py3-none-any.whl", {}, {}, 404),
        ("/files/foo-bar/foo_bar-1.0-py3-none-any.whl/", {}, {}, 404),
        (SDIST + ".metadata", {}, {}, 404),  # an sdist has no core metadata file here
        (WHEEL, {}, {"method": "POST"}, 405),
    ],
)
def test_declines_what_flask_must_answer(published, client, path, extra, options, status):
    known(client, basic("alice"))
    assert status_of(published, path, basic("alice") | extra, **options) == (False, status)


def test_declines_unknown_and_missing_credentials(published, client):
    known(client, basic("alice"))
    assert status_of(published, WHEEL, {}) == (False, 401)
    for _ in range(2):  # a failure is never remembered
        assert status_of(published, WHEEL, basic("alice", "wrong")) == (False, 401)
    elsewhere = {"environ_base": {"REMOTE_ADDR": "127.0.0.2"}}
    assert status_of(published, WHEEL, basic("alice"), **elsewhere) == (False, 200)
    assert status_of(published, WHEEL, basic("alice"), **elsewhere) == (True, 200)


def test_restricted_and_hidden_files_stay_with_flask(published, client):
    db = published.extensions["teamindex"].db
    known(client, basic("alice"), basic("bob"))
    assert db.set_visibility("foo-bar", "restricted")
    assert status_of(published, WHEEL, basic("alice")) == (True, 200)  # the owner
    assert status_of(published, WHEEL, basic("root")) == (False, 200)  # not yet verified
    assert status_of(published, WHEEL, basic("root")) == (True, 200)  # an admin
    for path in (WHEEL, METADATA, SDIST):
        assert status_of(published, path, basic("bob")) == (False, 404)


def test_token_limits_hold(published, client):
    _id, secret = add_token(published, "alice", scope="read", projects=["other"])
    token = basic("__token__", secret)
    known(client, token)
    assert status_of(published, OTHER, token) == (True, 200)
    for path in (WHEEL, METADATA, SDIST):
        assert status_of(published, path, token) == (False, 404)


def test_auth_changes_take_effect_on_the_next_download(published, client):
    token_id, secret = add_token(published, "bob", scope="read")
    token = basic("__token__", secret)
    known(client, basic("alice"), token, basic("root"))
    for login in (basic("alice"), token, basic("root")):
        assert status_of(published, WHEEL, login) == (True, 200)
    db = published.extensions["teamindex"].db
    change_password_elsewhere(published, "alice")
    assert status_of(published, WHEEL, basic("alice")) == (False, 401)
    assert db.revoke_token(token_id, utc_now())
    assert status_of(published, WHEEL, token) == (False, 401)
    db.add_allow("10.0.0.0/8", None, "office", utc_now())
    assert status_of(published, WHEEL, basic("root")) == (False, 403)


def test_blocked_address_keeps_verified_logins_and_refuses_new_ones(published, client):
    known(client, basic("alice"))
    throttle = published.extensions["teamindex"].throttle
    for _ in range(throttle.policy.ip_failures):
        throttle.failure("127.0.0.1", None)
    assert status_of(published, WHEEL, basic("alice")) == (True, 200)
    add_user(published, "carol")
    assert status_of(published, WHEEL, basic("carol")) == (False, 429)


def test_a_file_missing_from_disk_is_flasks_404(published, client):
    known(client, basic("alice"))
    svc = published.extensions["teamindex"]
    svc.storage.remove(svc.storage.file_path("foo-bar", "foo_bar-1.0-py3-none-any.whl"))
    hot, (status, _sent, body) = compare(published, WHEEL, basic("alice"))
    assert not hot and status.startswith("404") and b"restores it" in body


def test_front_server_configured_means_no_hot_downloads(published, client):
    known(client, basic("alice"))
    layer = hot_layer(published)
    layer.files = False  # what `serve --accel-redirect` sets: the front server sends files
    requests = collectors(published).requests.labels("/files/<project>/<filename>", "GET", "200")
    before = requests._value.get()
    served = {"hot": 0}
    original = layer.download
    layer.download = lambda *args: served.update(hot=served["hot"] + 1) or original(*args)
    with client.get(WHEEL, headers=basic("alice")) as response:
        assert response.status_code == 200
    assert served["hot"] == 0 and requests._value.get() == before + 1


def test_hot_downloads_are_counted_audited_and_logged(make_app, tmp_path, caplog):
    app = make_app(audit_downloads=True)
    client = app.test_client()
    wheel = make_wheel(tmp_path, "Foo_Bar", "1.0")
    assert upload(client, wheel).status == "200 OK"
    token_id, secret = add_token(app, "bob", scope="read")
    token = basic("__token__", secret)
    known(client, token)
    metrics = collectors(app)
    requests = metrics.requests.labels("/files/<project>/<filename>", "GET", "200")
    dists, metas = metrics.downloads.labels("dist"), metrics.downloads.labels("metadata")
    before = requests._value.get(), dists._value.get(), metas._value.get()
    assert answered(app, WHEEL, token) and answered(app, METADATA, token)
    with caplog.at_level(logging.INFO, logger="teamindex.access"):
        for path in (WHEEL, METADATA):
            with client.get(path, headers=token) as response:
                assert response.status_code == 200
                response.get_data()
    assert (requests._value.get(), dists._value.get(), metas._value.get()) == (
        before[0] + 2,
        before[1] + 1,
        before[2] + 1,
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "teamindex.access"]
    size = wheel.stat().st_size
    assert f' bob "GET {WHEEL}" 200 {size} ' in lines[0]
    audit = app.extensions["teamindex"].audit
    audit.flush()
    events = app.extensions["teamindex"].db.query_audit(since="", action="download")
    assert [(e.user, e.token_id, e.project, e.filename, e.ip) for e in events] == [
        ("bob", token_id, "foo-bar", WHEEL.rsplit("/", 1)[1], "127.0.0.1")
    ]
