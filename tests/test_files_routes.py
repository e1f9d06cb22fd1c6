"""File downloads: headers, conditional and range requests, PEP 658 metadata, path safety."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from uploading import remove_stored, upload
from werkzeug.http import http_date, parse_date

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = "foo_bar-1.0-py3-none-any.whl"
SDIST = "foo_bar-1.0.tar.gz"


@pytest.fixture
def published(client, tmp_path) -> dict[str, Path]:
    # Padding makes the wheel comfortably larger than the ranges asked for below.
    wheel = make_wheel(tmp_path, "Foo_Bar", "1.0", padding=5000)
    sdist = make_sdist(tmp_path, "Foo_Bar", "1.0")
    for path in (wheel, sdist):
        assert upload(client, path).status == "200 OK"
    return {WHEEL: wheel, SDIST: sdist}


def get(client, url: str, user: str | None = "alice", method: str = "GET", **headers: str):
    """A request whose response is fully read and closed (files stream from disk)."""
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if user:
        all_headers.update(basic(user))
    response = client.open(url, method=method, headers=all_headers)
    response.get_data()
    response.close()
    return response


def advertised(client) -> dict[str, dict]:
    page = client.get("/simple/foo-bar/", headers={**basic("alice"), "Accept": JSON}).json
    return {entry["filename"]: entry for entry in page["files"]}


@pytest.mark.parametrize("filename", [WHEEL, SDIST])
def test_get_file(client, published, filename):
    data = published[filename].read_bytes()
    entry = advertised(client)[filename]
    response = get(client, f"/files/foo-bar/{filename}")
    assert response.status == "200 OK"
    assert response.data == data
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    uploaded = datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00"))
    assert response.headers["Last-Modified"] == http_date(uploaded)
    assert parse_date(response.headers["Last-Modified"]) == uploaded.replace(microsecond=0)
    assert "Content-Encoding" not in response.headers
    # The advertised URL resolves to this one.
    assert entry["url"] == f"../../files/foo-bar/{filename}"


def test_head_file(client, published):
    data = published[WHEEL].read_bytes()
    response = get(client, f"/files/foo-bar/{WHEEL}", method="HEAD")
    assert response.status == "200 OK"
    assert response.data == b""
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert "Last-Modified" in response.headers


def test_if_none_match_is_304(client, published):
    etag = f'"{hashlib.sha256(published[WHEEL].read_bytes()).hexdigest()}"'
    response = get(client, f"/files/foo-bar/{WHEEL}", If_None_Match=etag)
    assert response.status == "304 NOT MODIFIED"
    assert response.data == b""
    assert response.headers["ETag"] == etag
    weak = get(client, f"/files/foo-bar/{WHEEL}", If_None_Match=f"W/{etag}")
    assert weak.status_code == 304
    other = get(client, f"/files/foo-bar/{WHEEL}", If_None_Match='"' + "0" * 64 + '"')
    assert other.status == "200 OK"


def test_if_modified_since_is_304(client, published):
    last_modified = get(client, f"/files/foo-bar/{WHEEL}").headers["Last-Modified"]
    response = get(client, f"/files/foo-bar/{WHEEL}", If_Modified_Since=last_modified)
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=-100", None, None),  # suffix: poetry's lazy wheel
        ("bytes=10-", 10, None),
    ],
)
def test_single_range_is_206(client, published, range_header, start, end):
    data = published[WHEEL].read_bytes()
    size = len(data)
    if start is None:
        start, end = size - 100, size - 1
    elif end is None:
        end = size - 1
    response = get(client, f"/files/foo-bar/{WHEEL}", Range=range_header)
    assert response.status == "206 PARTIAL CONTENT"
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.data == data[start : end + 1]
    assert response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "range_header", ["bytes={size}-", "bytes={size}-{bigger}", "bytes=-{bigger}"]
)
def test_unsatisfiable_range_is_416(client, published, range_header):
    size = len(published[WHEEL].read_bytes())
    header = range_header.format(size=size, bigger=size + 10_000)
    response = get(client, f"/files/foo-bar/{WHEEL}", Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


def test_wheel_metadata_file_matches_advertised_hash(client, published):
    entry = advertised(client)[WHEEL]
    with zipfile.ZipFile(published[WHEEL]) as archive:
        expected = archive.read("foo_bar-1.0.dist-info/METADATA")
    response = get(client, f"/files/foo-bar/{WHEEL}.metadata")
    assert response.status == "200 OK"
    assert response.data == expected
    assert hashlib.sha256(response.data).hexdigest() == entry["core-metadata"]["sha256"]
    assert response.headers["ETag"] == f'"{entry["core-metadata"]["sha256"]}"'
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Content-Length"] == str(len(expected))
    head = get(client, f"/files/foo-bar/{WHEEL}.metadata", method="HEAD")
    assert head.headers["Content-Length"] == str(len(expected))


def test_sdist_has_no_metadata_file(client, published):
    response = get(client, f"/files/foo-bar/{SDIST}.metadata")
    message = f"No core metadata file for {SDIST!r}."
    assert response.status == f"404 {message}"
    assert response.get_data(as_text=True) == message + "\n"


@pytest.mark.parametrize(
    "url",
    [
        f"/files/other/{WHEEL}",
        f"/files/Foo_Bar/{WHEEL}",
        "/files/foo-bar/foo_bar-9.9-py3-none-any.whl",
        "/files/foo-bar/foo_bar-9.9-py3-none-any.whl.metadata",
        "/files/foo-bar/.metadata",
        "/files/foo-bar/",
    ],
)
def test_unknown_file_is_404(client, published, url):
    response = get(client, url)
    assert response.status_code == 404
    assert published[WHEEL].read_bytes() not in response.data


@pytest.mark.parametrize(
    "url",
    [
        "/files/foo-bar/../../teamindex.sqlite3",
        "/files/foo-bar/..%2F..%2Fteamindex.sqlite3",
        "/files/foo-bar/%2e%2e%2f%2e%2e%2fteamindex.sqlite3",
        "/files/..%2Fteamindex.sqlite3/x",
        "/files/foo-bar/..",
        "/files/foo-bar/%2e%2e",
        f"/files/foo-bar/..%2Ffoo-bar%2F{WHEEL}",
        f"/files/foo-bar%2F..%2Ffoo-bar/{WHEEL}",
        f"/files/foo-bar/.%2F{WHEEL}",
        "/files/foo-bar/..%5C..%5Cteamindex.sqlite3",
        "/files/%2e%2e/teamindex.sqlite3",
        "/files/foo-bar/%00",
    ],
)
def test_traversal_attempts_are_404(client, published, settings, url):
    response = get(client, url)
    assert response.status_code == 404
    assert not response.data.startswith(b"SQLite format 3")
    assert published[WHEEL].read_bytes() not in response.data


@pytest.mark.parametrize("filename", [WHEEL, f"{WHEEL}.metadata", SDIST])
def test_no_content_encoding_even_when_gzip_accepted(client, published, filename):
    response = get(client, f"/files/foo-bar/{filename}", Accept_Encoding="gzip, deflate, zstd")
    assert response.status == "200 OK"
    assert "Content-Encoding" not in response.headers
    if filename != f"{WHEEL}.metadata":
        assert response.data == published[filename].read_bytes()


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice", "wrong-password")],
    ids=["no credentials", "wrong password"],
)
@pytest.mark.parametrize("filename", [WHEEL, f"{WHEEL}.metadata"])
def test_files_need_credentials(client, published, headers, filename):
    response = client.get(f"/files/foo-bar/{filename}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    assert response.data == b"Invalid or missing credentials for teamindex.\n"


def test_file_missing_from_disk_is_404_not_500(client, published, settings):
    remove_stored(settings.data_dir, f"foo-bar/{WHEEL}")
    response = get(client, f"/files/foo-bar/{WHEEL}")
    message = (
        f"File {WHEEL!r} is missing from storage; uploading {WHEEL!r} again (the same file) "
        "restores it."
    )
    assert response.status == f"404 {message}"
    remove_stored(settings.data_dir, f"foo-bar/{WHEEL}.metadata")
    response = get(client, f"/files/foo-bar/{WHEEL}.metadata")
    assert response.status == f"404 File '{WHEEL}.metadata' is missing from storage; " + (
        f"uploading {WHEEL!r} again (the same file) restores it."
    )


def test_local_version_filename_with_plus(client, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0+cu118")
    assert path.name == "foo-1.0+cu118-py3-none-any.whl"
    assert upload(client, path).status == "200 OK"
    entry = advertised_for(client, "foo")[path.name]
    assert entry["url"] == "../../files/foo/foo-1.0%2Bcu118-py3-none-any.whl"
    response = get(client, "/files/foo/foo-1.0%2Bcu118-py3-none-any.whl")
    assert response.status == "200 OK"
    assert response.data == path.read_bytes()


def advertised_for(client, project: str) -> dict[str, dict]:
    page = client.get(f"/simple/{project}/", headers={**basic("alice"), "Accept": JSON}).json
    return {entry["filename"]: entry for entry in page["files"]}
