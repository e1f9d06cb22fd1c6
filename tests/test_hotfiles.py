"""Downloads on the hot path answer only what Flask would answer, byte for byte, and decline
the rest (issue 14). As in test_hotpath: each request goes to the hot layer and to the Flask
app behind it; when the hot path answers, status, headers and body equal Flask's (the Date
header's value aside, which each stamps itself); when it must not, it declines and Flask's
status is the one the access rules give.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pytest
from builders import make_sdist, make_wheel
from conftest import add_token, add_user, basic
from flask import Flask
from s3_support import local_disk_only
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


@local_disk_only("the front server reads the data dir; S3 storage refuses --accel-redirect")
def test_with_a_front_server_hot_downloads_name_the_file_as_flask_does(make_app, tmp_path):
    """`serve --accel-redirect`: the hot path answers a download as files.front_sends does
    (no body, the file named for nginx or Caddy), so Caddy's one request per download is
    cheap; 304s are its own as without a front, and a missing file is Flask's 404."""
    app = make_app(accel_redirect="/_protected/")
    http = app.test_client()
    wheel = make_wheel(tmp_path, "Foo_Bar", "1.0+local.1")
    assert upload(http, wheel).status == "200 OK"
    url = f"/files/foo-bar/{wheel.name}"
    known(http, basic("alice"))
    for path in (url, url + ".metadata"):
        hot, (status, sent, body) = compare(app, path, basic("alice"))
        assert hot and status == "200 OK" and body == b"", path
        headers = dict(sent)
        name = path.removeprefix("/files/")
        assert headers["X-Accel-Redirect"] == "/_protected/" + name.replace("+", "%2B")
        assert headers["X-Teamindex-File"] == name
        hot, (status, _sent, _body) = compare(
            app, path, basic("alice") | {"If-None-Match": headers["ETag"]}
        )
        assert hot and status == "304 NOT MODIFIED", path
    svc = app.extensions["teamindex"]
    svc.storage.remove(svc.storage.file_path("foo-bar", wheel.name))
    hot, (status, _sent, body) = compare(app, url, basic("alice"))
    assert not hot and status.startswith("404") and b"restores it" in body


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


# -- cached upstream files (issue 13) ------------------------------------------------------------


def upstream_paths(items: list[Any]) -> list[str]:
    paths = []
    for item in items:
        paths.append(f"/files/six/{item.filename}")
        if item.metadata is not None:
            paths.append(f"/files/six/{item.filename}.metadata")
    return paths


@pytest.fixture
def cached_six(proxy, fake_upstream, tmp_path) -> tuple[Flask, list[Any]]:
    """six 1.0 (wheel, sdist) and 1.1 (no upload-time) upstream, pages read and every file
    downloaded once through Flask, so all of them are in the cache."""
    items = [
        fake_upstream.publish(tmp_path, "six", "1.0"),
        fake_upstream.publish(tmp_path, "six", "1.0", sdist=True),
        fake_upstream.publish(tmp_path, "six", "1.1", age=None),
    ]
    app = proxy(upstream_ttl=3600, upstream_min_age=0)
    client = app.test_client()
    assert client.get("/simple/six/", headers=basic("alice")).status_code == 200
    for path in upstream_paths(items):
        with client.get(path, headers=basic("alice")) as response:
            assert response.status_code == 200
            response.get_data()
    return app, items


def test_cached_upstream_files_on_the_hot_path_equal_flasks(cached_six, fake_upstream):
    app, items = cached_six
    _id, secret = add_token(app, "bob", scope="read", projects=["six"])
    logins = {"alice": basic("alice"), "token": basic("__token__", secret)}
    known(app.test_client(), *logins.values())
    asked = len(fake_upstream.seen)
    bodies = {f"/files/six/{i.filename}": i.data for i in items}
    bodies |= {f"/files/six/{i.filename}.metadata": i.metadata for i in items if i.metadata}
    for who, login in logins.items():
        for path in upstream_paths(items):
            case = (who, path)
            # Without an upload-time, send_file dates the file by its mtime: Flask's.
            dated = "1.1" not in path
            hot, (status, sent, body) = compare(app, path, login)
            assert hot is dated and status == "200 OK" and body == bodies[path], case
            headers = dict(sent)
            name = path.rsplit("/", 1)[1]
            assert headers["Content-Disposition"] == f"inline; filename={name}", case
            assert headers["X-Content-Type-Options"] == "nosniff", case
            etag, modified = headers["ETag"], headers["Last-Modified"]
            for conditional in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
                hot, (status, sent, body) = compare(app, path, login | conditional)
                assert hot is dated and status == "304 NOT MODIFIED", (case, conditional)
    assert len(fake_upstream.seen) == asked  # all from the cache


def test_cached_upstream_files_keep_flasks_read_decision(cached_six, fake_upstream, tmp_path):
    app, items = cached_six
    wheel = f"/files/six/{items[0].filename}"
    _id, narrow = add_token(app, "alice", scope="read", projects=["team-*"])
    token = basic("__token__", narrow)
    known(app.test_client(), basic("alice"), token)
    assert status_of(app, wheel, basic("alice")) == (True, 200)
    assert status_of(app, wheel, token) == (False, 404)  # the token does not cover six
    assert status_of(app, wheel, basic("alice") | {"Range": "bytes=0-9"}) == (False, 206)
    assert status_of(app, wheel, basic("alice"), method="HEAD") == (False, 200)
    db = app.extensions["teamindex"].db
    db.set_upstream_rule("six", {"min_age": 3 * 86400})  # a cooldown for six: 1.1 is held
    assert status_of(app, f"/files/six/{items[2].filename}", basic("alice")) == (False, 404)
    assert status_of(app, wheel, basic("alice")) == (True, 200)
    db.set_protected("six", True)  # private now: never upstream's
    assert status_of(app, wheel, basic("alice")) == (False, 404)
    db.set_protected("six", False)
    assert status_of(app, wheel, basic("alice")) == (True, 200)
    change_password_elsewhere(app, "alice")
    assert status_of(app, wheel, basic("alice")) == (False, 401)
    # A page past its TTL is Flask's (it revalidates); a file not cached yet too.
    app.extensions["teamindex"].upstream.pages.ttl = 0
    assert status_of(app, wheel, token) == (False, 404)
    known(app.test_client(), basic("bob"))
    assert status_of(app, wheel, basic("bob")) == (False, 200)
    app.extensions["teamindex"].upstream.pages.ttl = 3600
    assert status_of(app, wheel, basic("bob")) == (True, 200)
    new = fake_upstream.publish(tmp_path, "six", "1.2")
    app.extensions["teamindex"].upstream.pages.ttl = 0
    assert app.test_client().get("/simple/six/", headers=basic("bob")).status_code == 200
    app.extensions["teamindex"].upstream.pages.ttl = 3600
    new_url = f"/files/six/{new.filename}"
    assert not answered(app, new_url, basic("bob"))  # not in the cache yet
    with app.test_client().get(new_url, headers=basic("bob")) as response:
        assert response.status_code == 200 and response.get_data() == new.data
    assert status_of(app, new_url, basic("bob")) == (True, 200)


def test_a_hot_upstream_download_marks_the_file_used_at_most_once_a_minute(cached_six):
    app, items = cached_six
    known(app.test_client(), basic("alice"))
    files = app.extensions["teamindex"].upstream.files
    path = files.path(items[0].sha256)
    wheel = f"/files/six/{items[0].filename}"
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    assert answered(app, wheel, basic("alice"))
    assert time.time() - path.stat().st_mtime < 60  # an old mark is refreshed...
    recent = time.time() - 30
    os.utime(path, (recent, recent))
    assert answered(app, wheel, basic("alice"))
    assert path.stat().st_mtime == recent  # ...a recent one is left alone (no write)


def test_upstream_downloads_are_counted_and_audited_like_hosted_ones(
    proxy, fake_upstream, tmp_path
):
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy(audit_downloads=True, upstream_ttl=3600)
    client = app.test_client()
    token_id, secret = add_token(app, "bob", scope="read")
    token = basic("__token__", secret)
    metrics = collectors(app)
    dists, metas = metrics.downloads.labels("dist"), metrics.downloads.labels("metadata")
    before = dists._value.get(), metas._value.get()
    url = f"/files/six/{wheel.filename}"
    assert client.get("/simple/six/", headers=token).status_code == 200
    for path, hot in ((url, False), (url, True), (url + ".metadata", False)):
        assert answered(app, path, token) is hot  # first download: Flask streams and keeps
        with client.get(path, headers=token) as response:
            assert response.status_code == 200
            response.get_data()
    with client.get(url, headers=token | {"Range": "bytes=0-9"}) as response:
        assert response.status_code == 206  # a part is not a download (as for hosted files)
    assert (dists._value.get(), metas._value.get()) == (before[0] + 3, before[1] + 1)
    svc = app.extensions["teamindex"]
    svc.audit.flush()
    counted = [(p, f, n) for _day, p, f, n in svc.db.download_counts("")]
    assert counted == [("six", wheel.filename, 2)]
    events = svc.db.query_audit(since="", action="download")
    assert [(e.user, e.token_id, e.project, e.filename, e.ip) for e in events] == [
        ("bob", token_id, "six", wheel.filename, "127.0.0.1")
    ] * 2
