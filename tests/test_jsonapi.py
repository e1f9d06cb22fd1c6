"""Warehouse's JSON API (/pypi/<project>/json, /pypi/<project>/<version>/json), as Renovate,
Dependabot-style bots and scripts read it: the shape, the read rules, redirects, caching.
Hidden projects answering like missing ones on these routes is in test_hidden_names."""

from __future__ import annotations

import hashlib

import pytest
import requests
from builders import make_sdist, make_wheel
from conftest import PASSWORD, add_token, basic
from uploading import upload

META = """Metadata-Version: 2.1
Name: Acme.Core
Version: {version}
Summary: Core of acme
Author: Ann
Author-email: ann@example.invalid
License: MIT
Home-page: https://example.invalid/acme
Project-URL: Source, https://example.invalid/src
Project-URL: Changelog, https://example.invalid/changes
Classifier: Programming Language :: Python :: 3
Requires-Python: >=3.9
Requires-Dist: attrs>=22
Description-Content-Type: text/markdown

# Acme core
"""

INFO_KEYS = {
    "author",
    "author_email",
    "bugtrack_url",
    "classifiers",
    "description",
    "description_content_type",
    "docs_url",
    "download_url",
    "downloads",
    "dynamic",
    "home_page",
    "keywords",
    "license",
    "license_expression",
    "license_files",
    "maintainer",
    "maintainer_email",
    "name",
    "package_url",
    "platform",
    "project_url",
    "project_urls",
    "provides_extra",
    "release_url",
    "requires_dist",
    "requires_python",
    "summary",
    "version",
    "yanked",
    "yanked_reason",
}
FILE_KEYS = {
    "comment_text",
    "digests",
    "downloads",
    "filename",
    "has_sig",
    "md5_digest",
    "packagetype",
    "python_version",
    "requires_python",
    "size",
    "upload_time",
    "upload_time_iso_8601",
    "url",
    "yanked",
    "yanked_reason",
}


@pytest.fixture
def published(app, client, tmp_path):
    """acme-core 1.0 (wheel + sdist), 2.0 (wheel, then yanked) and 3.0rc1 (wheel)."""
    paths = {}
    for version in ("1.0", "2.0", "3.0rc1"):
        wheel = make_wheel(tmp_path, "Acme.Core", version, metadata=META.format(version=version))
        assert upload(client, wheel, "alice").status_code == 200
        paths[wheel.name] = wheel
    sdist = make_sdist(tmp_path, "acme-core", "1.0")
    assert upload(client, sdist, "alice").status_code == 200
    paths[sdist.name] = sdist
    yanked = client.post(
        "/api/acme-core/2.0/yank", data={"reason": "broken"}, headers=basic("alice")
    )
    assert yanked.status_code == 200, yanked.status
    return paths


def test_project_json_has_warehouse_shape(client, published):
    response = client.get("/pypi/acme-core/json", headers=basic("bob"))
    assert response.status_code == 200, response.status
    assert response.mimetype == "application/json"
    assert response.headers["ETag"]
    data = response.get_json()
    assert set(data) == {"info", "last_serial", "releases", "urls", "vulnerabilities"}
    assert data["vulnerabilities"] == []
    assert isinstance(data["last_serial"], int) and data["last_serial"] > 0
    info = data["info"]
    assert set(info) == INFO_KEYS
    # The newest release neither yanked nor a pre-release.
    assert info["version"] == "1.0"
    assert info["name"] == "Acme.Core"
    assert info["summary"] == "Core of acme"
    assert info["author"] == "Ann" and info["author_email"] == "ann@example.invalid"
    assert info["license"] == "MIT"
    assert info["home_page"] == "https://example.invalid/acme"
    assert info["project_urls"] == {
        "Source": "https://example.invalid/src",
        "Changelog": "https://example.invalid/changes",
    }
    assert info["classifiers"] == ["Programming Language :: Python :: 3"]
    assert info["requires_dist"] == ["attrs>=22"]
    assert info["requires_python"] == ">=3.9"
    assert info["description"].strip() == "# Acme core"
    assert info["description_content_type"] == "text/markdown"
    assert info["yanked"] is False and info["yanked_reason"] is None
    assert info["downloads"] == {"last_day": -1, "last_month": -1, "last_week": -1}
    assert info["package_url"] == "http://localhost/project/acme-core/"
    assert info["release_url"].startswith(info["package_url"])
    assert list(data["releases"]) == ["1.0", "2.0", "3.0rc1"]
    assert {f["filename"] for f in data["urls"]} == {
        "acme_core-1.0-py3-none-any.whl",
        "acme_core-1.0.tar.gz",
    }
    assert data["urls"] == data["releases"]["1.0"]
    for entry in data["urls"]:
        assert set(entry) == FILE_KEYS
        body = published[entry["filename"]].read_bytes()
        assert entry["digests"] == {
            "md5": hashlib.md5(body).hexdigest(),
            "sha256": hashlib.sha256(body).hexdigest(),
            "blake2b_256": hashlib.blake2b(body, digest_size=32).hexdigest(),
        }
        assert entry["size"] == len(body)
        assert entry["url"] == f"http://localhost/files/acme-core/{entry['filename']}"
        assert entry["upload_time_iso_8601"].endswith("Z")
        assert entry["upload_time_iso_8601"].startswith(entry["upload_time"])
        assert entry["has_sig"] is False and entry["comment_text"] == ""
        assert entry["packagetype"] in ("bdist_wheel", "sdist")
        assert entry["yanked"] is False and entry["yanked_reason"] is None
    (yanked,) = data["releases"]["2.0"]
    assert yanked["yanked"] is True and yanked["yanked_reason"] == "broken"
    # The file URL works with the same credentials.
    wheel_url = next(f["url"] for f in data["urls"] if f["packagetype"] == "bdist_wheel")
    download = client.get(wheel_url.removeprefix("http://localhost"), headers=basic("bob"))
    assert download.status_code == 200
    download.close()


def test_release_json(client, published):
    response = client.get("/pypi/acme-core/2.0/json", headers=basic("bob"))
    assert response.status_code == 200, response.status
    data = response.get_json()
    # Warehouse's per-version answer has no "releases" key.
    assert set(data) == {"info", "last_serial", "urls", "vulnerabilities"}
    assert data["info"]["version"] == "2.0"
    assert data["info"]["yanked"] is True and data["info"]["yanked_reason"] == "broken"
    assert [f["filename"] for f in data["urls"]] == ["acme_core-2.0-py3-none-any.whl"]
    pre = client.get("/pypi/acme-core/3.0rc1/json", headers=basic("bob")).get_json()
    assert pre["info"]["version"] == "3.0rc1"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/pypi/Acme.Core/json", "/pypi/acme-core/json"),
        ("/pypi/ACME_core/json?x=1", "/pypi/acme-core/json?x=1"),
        ("/pypi/Acme.Core/2.0/json", "/pypi/acme-core/2.0/json"),
        ("/pypi/acme-core/2.0.0/json", "/pypi/acme-core/2.0/json"),  # the release as named
        ("/pypi/acme-core/3.0.0-RC1/json", "/pypi/acme-core/3.0rc1/json"),
    ],
)
def test_other_spellings_redirect(client, published, path, location):
    response = client.get(path, headers=basic("bob"))
    assert response.status_code == 301, response.status
    assert response.headers["Location"] == location


@pytest.mark.parametrize(
    "path",
    ["/pypi/nope/json", "/pypi/acme-core/9.9/json", "/pypi/acme-core/not-a-version/json"],
)
def test_missing_is_404(client, published, path):
    response = client.get(path, headers=basic("bob"))
    assert response.status_code == 404, response.status


def test_read_rules(app, client, published):
    assert client.get("/pypi/acme-core/json").status_code == 401
    assert client.get("/pypi/acme-core/json", headers=basic("bob", "wrong")).status_code == 401
    _id, other = add_token(app, "bob", scope="read", projects=["other-*"])
    limited = client.get("/pypi/acme-core/json", headers=basic("__token__", other))
    assert limited.status_code == 404  # outside the token's project list: missing
    _id, covering = add_token(app, "bob", scope="read", projects=["acme-*"])
    assert (
        client.get("/pypi/acme-core/json", headers=basic("__token__", covering)).status_code == 200
    )
    db = app.extensions["teamindex"].db
    db.set_visibility("acme-core", "restricted")
    assert client.get("/pypi/acme-core/json", headers=basic("bob")).status_code == 404
    assert client.get("/pypi/acme-core/1.0/json", headers=basic("bob")).status_code == 404
    assert client.get("/pypi/acme-core/json", headers=basic("alice")).status_code == 200
    assert client.get("/pypi/acme-core/json", headers=basic("root")).status_code == 200


def test_cached_per_serial(app, client, published, tmp_path):
    pages = app.extensions["teamindex"].pages
    first = client.get("/pypi/acme-core/json", headers=basic("bob"))
    builds = pages.builds
    again = client.get("/pypi/acme-core/json", headers=basic("bob"))
    assert pages.builds == builds and again.data == first.data
    etag = first.headers["ETag"]
    revalidated = client.get(
        "/pypi/acme-core/json", headers={**basic("bob"), "If-None-Match": etag}
    )
    assert revalidated.status_code == 304
    wheel = make_wheel(tmp_path, "Acme.Core", "1.1", metadata=META.format(version="1.1"))
    assert upload(client, wheel, "alice").status_code == 200
    fresh = client.get("/pypi/acme-core/json", headers=basic("bob")).get_json()
    assert fresh["info"]["version"] == "1.1"
    assert fresh["last_serial"] > first.get_json()["last_serial"]


def test_a_client_over_the_wire(live_server, client, published):
    """What Renovate does: GET the JSON with Basic auth, read versions and release dates."""
    url = f"{live_server.url}/pypi/Acme.Core/json"
    response = requests.get(url, auth=("bob", PASSWORD), timeout=10)
    assert response.status_code == 200
    assert response.history and response.history[0].status_code == 301
    data = response.json()
    assert data["info"]["version"] == "1.0"
    dates = {v: files[0]["upload_time_iso_8601"] for v, files in data["releases"].items()}
    assert set(dates) == {"1.0", "2.0", "3.0rc1"}
    file_url = data["urls"][0]["url"]
    assert file_url.startswith(live_server.url + "/files/acme-core/")
    body = requests.get(file_url, auth=("bob", PASSWORD), timeout=10)
    assert hashlib.sha256(body.content).hexdigest() == data["urls"][0]["digests"]["sha256"]
