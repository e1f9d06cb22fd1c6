"""The simple API over HTTP: negotiation, headers, redirects, auth, caching, query counts."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from flask import Flask
from uploading import upload

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html; charset=utf-8"
CHALLENGE = 'Basic realm="teamindex"'

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"  # noqa: E501
UV = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"  # noqa: E501
POETRY = "application/vnd.pypi.simple.v1+json, */*;q=0.1"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def auth(user: str = "alice", **headers: str) -> dict[str, str]:
    return {**basic(user), **{k.replace("_", "-"): v for k, v in headers.items()}}


@pytest.fixture
def published(client, tmp_path) -> dict[str, Path]:
    """Project Foo_Bar 1.0: a wheel (with .metadata, requires-python) and an sdist."""
    wheel = make_wheel(tmp_path, "Foo_Bar", "1.0", requires_python=">=3.8,<4")
    sdist = make_sdist(tmp_path, "Foo_Bar", "1.0", requires_python=">=3.8,<4")
    for path in (wheel, sdist):
        assert upload(client, path).status == "200 OK"
    return {"wheel": wheel, "sdist": sdist}


# -- negotiation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, TEXT_HTML),
        ("", TEXT_HTML),
        (PIP, JSON),
        (UV, JSON),
        (POETRY, JSON),
        ("*/*", TEXT_HTML),  # hatch's probe parses HTML
        ("text/*", TEXT_HTML),
        ("application/*", V1_HTML),
        (BROWSER, TEXT_HTML),
        ("text/html", TEXT_HTML),
        (V1_HTML, V1_HTML),
        (JSON, JSON),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", V1_HTML),
        (f"{JSON};q=0.5, text/html;q=0.5", TEXT_HTML),  # ties go to HTML
        (f"{JSON}, text/html;q=0.9", JSON),
    ],
)
@pytest.mark.parametrize("path", ["/simple/foo-bar/", "/simple/"])
def test_negotiation(client, published, path, accept, content_type):
    headers = basic("alice")
    if accept is not None:
        headers["Accept"] = accept
    response = client.get(path, headers=headers)
    assert response.status == "200 OK"
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.headers["Cache-Control"] == "private, max-age=0, must-revalidate"
    if content_type == JSON:
        assert response.json["meta"] == {"api-version": "1.1"}
    else:
        assert response.data.startswith(b"<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("query", "accept", "content_type"),
    [
        ("format=application/vnd.pypi.simple.v1%2Bjson", "text/html", JSON),
        ("format=application/vnd.pypi.simple.v1%2Bhtml", JSON, V1_HTML),
        ("format=text/html", JSON, TEXT_HTML),
        ("format=application/vnd.pypi.simple.latest%2Bjson", None, JSON),
    ],
)
def test_format_query_parameter_wins(client, published, query, accept, content_type):
    headers = auth(Accept=accept) if accept else basic("alice")
    response = client.get(f"/simple/foo-bar/?{query}", headers=headers)
    assert response.status == "200 OK"
    assert response.headers["Content-Type"] == content_type


@pytest.mark.parametrize(
    ("url", "accept"),
    [
        ("/simple/foo-bar/", "application/json"),
        ("/simple/foo-bar/", "text/plain, image/png"),
        ("/simple/", "application/json"),
        ("/simple/foo-bar/?format=application/json", None),
        ("/simple/foo-bar/?format=*/*", JSON),
    ],
)
def test_unacceptable_is_406(client, published, url, accept):
    headers = auth(Accept=accept) if accept else basic("alice")
    response = client.get(url, headers=headers)
    assert response.status_code == 406
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    message = response.get_data(as_text=True).strip()
    assert response.status == f"406 {message}"
    assert JSON in message


# -- the pages -----------------------------------------------------------------------------


def test_project_json_page(client, published):
    response = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    page = response.json
    wheel, sdist = published["wheel"], published["sdist"]
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("foo_bar-1.0.dist-info/METADATA")
    assert page["name"] == "foo-bar"
    assert page["versions"] == ["1.0"]
    files = {entry["filename"]: entry for entry in page["files"]}
    assert sorted(files) == sorted([wheel.name, sdist.name])
    for path in (wheel, sdist):
        entry = files[path.name]
        assert entry["url"] == f"../../files/foo-bar/{path.name}"
        assert entry["hashes"] == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        assert entry["size"] == path.stat().st_size
        assert entry["yanked"] is False
        assert entry["requires-python"] == ">=3.8,<4"
        assert entry["upload-time"].endswith("Z")
    assert files[wheel.name]["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert "core-metadata" not in files[sdist.name]


def test_project_html_page(client, published):
    response = client.get("/simple/foo-bar/", headers=basic("alice"))
    body = response.get_data(as_text=True)
    assert "<title>Links for foo-bar</title>" in body
    assert body.count("<a ") == 2
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in body
    sha = hashlib.sha256(published["wheel"].read_bytes()).hexdigest()
    assert f'href="../../files/foo-bar/foo_bar-1.0-py3-none-any.whl#sha256={sha}"' in body


def test_root_page_lists_display_names(client, published, tmp_path):
    assert upload(client, make_wheel(tmp_path, "aaa", "1.0"), "bob").status == "200 OK"
    response = client.get("/simple/", headers=auth(Accept=JSON))
    assert response.json["projects"] == [
        {"name": "aaa", "_normalized": "aaa"},
        {"name": "Foo_Bar", "_normalized": "foo-bar"},
    ]
    html = client.get("/simple/", headers=basic("alice")).get_data(as_text=True)
    assert '<a href="foo-bar/">Foo_Bar</a>' in html


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/simple/Foo_Bar/", "/simple/foo-bar/"),
        ("/simple/FOO.BAR/", "/simple/foo-bar/"),
        ("/simple/foo__bar/", "/simple/foo-bar/"),
        (
            "/simple/Foo_Bar/?format=application/vnd.pypi.simple.v1%2Bjson",
            "/simple/foo-bar/?format=application/vnd.pypi.simple.v1%2Bjson",
        ),
        ("/legacy/+simple/Foo_Bar/", "/legacy/+simple/foo-bar/"),
    ],
)
def test_non_normalized_name_redirects_301(client, published, url, location):
    response = client.get(url, headers=basic("alice"))
    assert response.status == "301 MOVED PERMANENTLY"
    assert response.headers["Location"] == location
    assert client.get(location, headers=basic("alice")).status == "200 OK"


def test_missing_trailing_slash_redirects(client, published):
    response = client.get("/simple/foo-bar", headers=basic("alice"))
    assert response.status_code in (301, 308)
    assert response.headers["Location"].endswith("/simple/foo-bar/")


@pytest.mark.parametrize("name", ["nope", "foo-bar-baz"])
def test_unknown_project_is_404(client, published, name):
    response = client.get(f"/simple/{name}/", headers=auth(Accept=JSON))
    message = f"No project named {name!r} in this index."
    assert response.status == f"404 {message}"
    assert response.get_data(as_text=True) == message + "\n"


def test_devpi_style_probe_serves_html(client, published):
    # hatch probes <upload-url>/+simple/<name>/ with Accept: */* and regex-parses anchors.
    response = client.get("/legacy/+simple/foo-bar/", headers=auth(Accept="*/*"))
    assert response.status == "200 OK"
    assert response.headers["Content-Type"] == TEXT_HTML
    body = response.get_data(as_text=True)
    assert ">foo_bar-1.0-py3-none-any.whl</a>" in body
    assert ">foo_bar-1.0.tar.gz</a>" in body
    same = client.get("/simple/foo-bar/", headers=auth(Accept="*/*"))
    assert same.data == response.data


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/simple/", "/simple/foo-bar/", "/simple/nope/"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong-password"),
        basic("nobody"),
        basic("alice", ""),
        {"Authorization": "Bearer abc"},
    ],
    ids=["none", "wrong password", "unknown user", "empty password", "bearer"],
)
def test_without_valid_credentials_is_401(client, published, url, headers):
    response = client.get(url, headers=headers)
    assert response.status == "401 Invalid or missing credentials for teamindex."
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.get_data(as_text=True) == "Invalid or missing credentials for teamindex.\n"
    assert b"foo_bar" not in response.data


def test_anonymous_read_setting(make_app, tmp_path):
    app = make_app(anonymous_read=True)
    client = app.test_client()
    assert upload(client, make_wheel(tmp_path, "foo", "1.0")).status == "200 OK"
    response = client.get("/simple/foo/", headers={"Accept": JSON})
    assert response.status == "200 OK"
    assert [f["filename"] for f in response.json["files"]] == ["foo-1.0-py3-none-any.whl"]
    with client.get("/files/foo/foo-1.0-py3-none-any.whl") as download:
        assert download.status == "200 OK"
    # Wrong credentials are still wrong; anonymous does not mean "anything goes".
    response = client.get("/simple/foo/", headers=basic("alice", "wrong-password"))
    assert response.status_code == 401
    response = upload(client, make_wheel(tmp_path, "foo", "2.0"), user=None)
    assert response.status == "401 Uploading needs credentials."
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_anonymous_read_is_off_by_default(client, published):
    assert client.get("/simple/", headers={"Accept": JSON}).status_code == 401


# -- caching ---------------------------------------------------------------------------------


def pages(app: Flask):
    return app.extensions["teamindex"].pages


def test_etag_and_304_without_rendering(app, client, published):
    first = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    builds = pages(app).builds
    response = client.get("/simple/foo-bar/", headers=auth(Accept=JSON, If_None_Match=etag))
    assert response.status == "304 NOT MODIFIED"
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert pages(app).builds == builds
    again = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    assert again.data == first.data
    assert pages(app).builds == builds


@pytest.mark.parametrize(
    "template",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
    ids=["strong", "weak", "list", "star"],
)
def test_if_none_match_forms(client, published, template):
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): a proxy that gzips a page
    # (nginx) turns the ETag into W/"..." and clients send that back.
    etag = client.get("/simple/foo-bar/", headers=auth(Accept=JSON)).headers["ETag"]
    headers = auth(Accept=JSON, If_None_Match=template.format(etag=etag))
    assert client.get("/simple/foo-bar/", headers=headers).status_code == 304


def test_etag_differs_per_content_type(client, published):
    html = client.get("/simple/foo-bar/", headers=basic("alice"))
    json_ = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    assert html.headers["ETag"] != json_.headers["ETag"]
    stale = client.get(
        "/simple/foo-bar/", headers=auth(Accept=JSON, If_None_Match=html.headers["ETag"])
    )
    assert stale.status_code == 200


def test_new_upload_changes_etag_and_content(app, client, published, tmp_path):
    before = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    root_before = client.get("/simple/", headers=auth(Accept=JSON))
    assert upload(client, make_wheel(tmp_path, "Foo_Bar", "2.0")).status == "200 OK"
    after = client.get(
        "/simple/foo-bar/", headers=auth(Accept=JSON, If_None_Match=before.headers["ETag"])
    )
    assert after.status == "200 OK"
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.json["versions"] == ["1.0", "2.0"]
    # The project list did not change: a re-rendered root page revalidates to 304...
    root_headers = auth(Accept=JSON, If_None_Match=root_before.headers["ETag"])
    assert client.get("/simple/", headers=root_headers).status_code == 304
    # ...until a new project appears.
    assert upload(client, make_wheel(tmp_path, "zzz", "1.0")).status == "200 OK"
    root_after = client.get("/simple/", headers=root_headers)
    assert root_after.status_code == 200
    assert [p["name"] for p in root_after.json["projects"]] == ["Foo_Bar", "zzz"]


def test_other_project_upload_keeps_etag(client, published, tmp_path):
    before = client.get("/simple/foo-bar/", headers=auth(Accept=JSON))
    assert upload(client, make_wheel(tmp_path, "other", "1.0")).status == "200 OK"
    response = client.get(
        "/simple/foo-bar/", headers=auth(Accept=JSON, If_None_Match=before.headers["ETag"])
    )
    assert response.status_code == 304


def test_gzip_when_accepted(client, tmp_path):
    for n in range(12):  # enough files for the page to pass the gzip threshold
        assert upload(client, make_wheel(tmp_path, "foo", f"1.{n}")).status == "200 OK"
    plain = client.get("/simple/foo/", headers=auth(Accept=JSON))
    assert "Content-Encoding" not in plain.headers
    packed = client.get("/simple/foo/", headers=auth(Accept=JSON, Accept_Encoding="gzip, br"))
    assert packed.status == "200 OK"
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Content-Type"] == JSON
    assert packed.headers["Vary"] == "Accept, Accept-Encoding"
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data)
    assert gzip.decompress(packed.data) == plain.data
    # Different bytes, different strong ETag; each revalidates to 304 in its own form.
    assert packed.headers["ETag"] != plain.headers["ETag"]
    revalidated = client.get(
        "/simple/foo/",
        headers=auth(Accept=JSON, Accept_Encoding="gzip", If_None_Match=packed.headers["ETag"]),
    )
    assert revalidated.status_code == 304
    html = client.get("/simple/foo/", headers=auth(Accept_Encoding="gzip"))
    assert gzip.decompress(html.data).startswith(b"<!DOCTYPE html>")


def test_small_page_is_not_gzipped(client, published):
    response = client.get("/simple/", headers=auth(Accept=JSON, Accept_Encoding="gzip"))
    assert response.status == "200 OK"
    assert "Content-Encoding" not in response.headers
    assert response.json["projects"][0]["name"] == "Foo_Bar"


# -- query counts ----------------------------------------------------------------------------


def count_statements(app: Flask, client, url: str, headers: dict[str, str]) -> tuple[int, int]:
    """(SQL statements executed, status) for one request; the test client runs the request
    on this thread, so this thread's connection is the one the view uses."""
    statements: list[str] = []
    with app.app_context():
        conn = app.extensions["teamindex"].db.conn
    conn.set_trace_callback(statements.append)
    try:
        response = client.get(url, headers=headers)
    finally:
        conn.set_trace_callback(None)
    return len(statements), response.status_code


def test_query_count_does_not_grow_with_files(app, client, tmp_path):
    for n in range(3):
        assert upload(client, make_wheel(tmp_path, "small", f"1.{n}")).status == "200 OK"
    for n in range(60):
        assert upload(client, make_sdist(tmp_path, "big", f"1.{n}")).status == "200 OK"
    headers = auth(Accept=JSON)
    counts = {}
    for project in ("small", "big"):
        builds = pages(app).builds
        miss = count_statements(app, client, f"/simple/{project}/", headers)
        assert pages(app).builds == builds + 1
        hit = count_statements(app, client, f"/simple/{project}/", headers)
        assert pages(app).builds == builds + 1
        counts[project] = (miss, hit)
    (small_miss, small_hit), (big_miss, big_hit) = counts["small"], counts["big"]
    assert small_miss == big_miss
    assert small_hit == big_hit
    assert small_miss[1] == small_hit[1] == 200
    assert small_hit[0] == 1  # the hot path: one statement for serials, project and role
    assert small_miss[0] <= 10
    response = client.get("/simple/big/", headers=headers)
    assert len(response.json["files"]) == 60
