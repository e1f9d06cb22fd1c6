"""Legacy filename spellings (issue 12, failure 1): `Django-3.2.25-py3-none-any.whl`,
`ruamel.yaml-0.17.21.tar.gz`. Accepted by upload as PyPI accepts them and as the binary
distribution format spec asks of consumers; stored, listed and served under the exact name
uploaded; one file per normalized filename; a spelling of another project still refused."""

from __future__ import annotations

import hashlib
import urllib.parse
import zipfile
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel, metadata_text
from conftest import basic
from uploading import stored_files, temp_files, upload

from teamindex.cli import main

JSON = "application/vnd.pypi.simple.v1+json"

# (metadata Name, version, filename) as real projects published them.
LEGACY_WHEELS = [
    ("Django", "3.2.25", "Django-3.2.25-py3-none-any.whl"),
    (
        "MarkupSafe",
        "2.1.5",
        "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ),
    ("SQLAlchemy", "2.0.30", "SQLAlchemy-2.0.30-cp312-cp312-win_amd64.whl"),
    ("ruamel.yaml", "0.17.21", "ruamel.yaml-0.17.21-py3-none-any.whl"),
    ("backports.tarfile", "1.2.0", "backports.tarfile-1.2.0-py3-none-any.whl"),
    ("Foo.Bar", "1.0", "Foo.Bar-1.0-1-py2.py3-none-any.whl"),  # with a build tag
]
LEGACY_SDISTS = [
    ("Django", "3.2.25", "Django-3.2.25.tar.gz"),
    ("ruamel.yaml", "0.17.21", "ruamel.yaml-0.17.21.tar.gz"),
    ("zope.interface", "6.0", "zope.interface-6.0.tar.gz"),
]


def legacy_wheel(directory: Path, name: str, version: str, filename: str) -> Path:
    return make_wheel(directory, name, version, legacy=True, filename=filename)


def fetch(client, url: str):
    """GET with alice's password; the body read and the streamed file closed."""
    response = client.get(url, headers=basic("alice"))
    response.get_data()
    response.close()
    return response


def project_json(client, project: str) -> dict:
    response = client.get(f"/simple/{project}/", headers={**basic("alice"), "Accept": JSON})
    assert response.status_code == 200, response.status
    return response.json


@pytest.mark.parametrize(("name", "version", "filename"), LEGACY_WHEELS + LEGACY_SDISTS)
def test_legacy_spelling_is_stored_listed_and_served_as_uploaded(
    client, settings, tmp_path, name, version, filename
):
    if filename.endswith(".whl"):
        path = legacy_wheel(tmp_path, name, version, filename)
    else:
        path = make_sdist(tmp_path, name, version, filename=filename)
    project = name.lower().replace(".", "-")
    response = upload(client, path, name=name, version=version)
    assert response.status == "200 OK", response.get_data(as_text=True)
    wheel = filename.endswith(".whl")
    assert stored_files(settings.data_dir) == [f"{project}/{filename}"] + (
        [f"{project}/{filename}.metadata"] if wheel else []
    )
    assert temp_files(settings.data_dir) == []
    page = project_json(client, project)
    assert [f["filename"] for f in page["files"]] == [filename]
    assert page["files"][0]["url"].endswith("/" + urllib.parse.quote(filename))
    html = client.get(f"/simple/{project}/", headers=basic("alice")).get_data(as_text=True)
    assert f">{filename}</a>" in html
    served = fetch(client, f"/files/{project}/{filename}")
    assert served.status_code == 200
    assert served.data == path.read_bytes()
    metadata = fetch(client, f"/files/{project}/{filename}.metadata")
    if wheel:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(f"{name}-{version}.dist-info/METADATA")
        assert metadata.status_code == 200
        assert metadata.data == raw
        assert page["files"][0]["core-metadata"] == {"sha256": hashlib.sha256(raw).hexdigest()}
    else:
        assert metadata.status_code == 404


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        # Another project's spelling, whatever the case and separators (the archive spells
        # it too, so the name check itself is what refuses).
        ("Bar-1.0-py3-none-any.whl", "Name in metadata 'foo' does not match"),
        ("Foo.Baz-1.0-py3-none-any.whl", "Name in metadata 'foo' does not match"),
        ("FOO_BAR-1.0-py3-none-any.whl", "Name in metadata 'foo' does not match"),
        ("Foo.Bar-1.0.tar.gz", "Name in metadata 'foo' does not match"),
        # A spelling that is no valid name at all.
        ("_Foo-1.0-py3-none-any.whl", "'_Foo' is an invalid value for Name."),
    ],
)
def test_spelling_of_another_project_is_refused(client, settings, tmp_path, filename, message):
    foo = metadata_text("foo", "1.0")
    spelled = filename.split("-", 1)[0]
    if filename.endswith(".whl"):
        path = make_wheel(tmp_path, spelled, "1.0", legacy=True, filename=filename, metadata=foo)
    else:
        path = make_sdist(tmp_path, spelled, "1.0", filename=filename, metadata=foo)
    response = upload(client, path)
    assert response.status_code == 400
    assert message in response.status
    assert message in response.get_data(as_text=True)
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []


def test_legacy_spelling_needs_the_projects_own_rights(app, client, settings, tmp_path):
    """bob may not upload to alice's `django` by spelling it `Django` or `DJANGO`."""
    assert upload(client, make_wheel(tmp_path, "django", "1.0")).status == "200 OK"
    for spelling in ("Django", "DJANGO"):
        wheel = make_wheel(
            tmp_path, spelling, "2.0", legacy=True, filename=f"{spelling}-2.0-py3-none-any.whl"
        )
        response = upload(client, wheel, user="bob")
        assert response.status_code == 403, response.status
    assert [f["filename"] for f in project_json(client, "django")["files"]] == [
        "django-1.0-py3-none-any.whl"
    ]


# -- one file per normalized filename ---------------------------------------------------------

SPELLINGS = ("Django-3.2.25-py3-none-any.whl", "django-3.2.25-py3-none-any.whl")


@pytest.mark.parametrize(("first", "second"), [SPELLINGS, SPELLINGS[::-1]])
def test_other_spelling_with_identical_bytes_is_the_same_file(
    client, settings, tmp_path, first, second
):
    path = legacy_wheel(tmp_path, "Django", "3.2.25", first)
    assert upload(client, path).status == "200 OK"
    before = client.get("/simple/django/", headers=basic("alice"))
    response = upload(client, None, filename=second, data=path.read_bytes())
    assert response.status == "200 OK"
    assert response.get_data(as_text=True) == f"{second} already exists with the same content."
    after = client.get("/simple/django/", headers=basic("alice"))
    assert after.data == before.data
    assert after.headers["ETag"] == before.headers["ETag"]
    assert stored_files(settings.data_dir) == [f"django/{first}", f"django/{first}.metadata"]
    assert temp_files(settings.data_dir) == []


@pytest.mark.parametrize(("first", "second"), [SPELLINGS, SPELLINGS[::-1]])
def test_other_spelling_with_other_bytes_is_refused(client, settings, tmp_path, first, second):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original = legacy_wheel(tmp_path / "a", "Django", "3.2.25", first)
    assert upload(client, original).status == "200 OK"
    other = make_wheel(tmp_path / "b", "Django", "3.2.25", legacy=True, filename=second, padding=10)
    response = upload(client, other)
    sha = hashlib.sha256(original.read_bytes()).hexdigest()
    message = (
        f"File already exists ('{first}', with sha256 hash '{sha}'). A filename can only "
        "ever hold one content; upload a new version."
    )
    assert response.status == f"400 {message}"
    assert stored_files(settings.data_dir) == [f"django/{first}", f"django/{first}.metadata"]
    assert (settings.data_dir / "packages" / "django" / first).read_bytes() == (
        original.read_bytes()
    )
    assert temp_files(settings.data_dir) == []


def test_other_spellings_of_an_sdist_are_one_file(client, settings, tmp_path):
    path = make_sdist(tmp_path, "zope.interface", "6.0", filename="zope.interface-6.0.tar.gz")
    assert upload(client, path).status == "200 OK"
    for spelling in ("zope_interface-6.0.tar.gz", "Zope.Interface-6.0.tar.gz"):
        response = upload(client, None, filename=spelling, data=path.read_bytes())
        assert response.status == "200 OK"
    other = make_sdist(
        tmp_path,
        "zope.interface",
        "6.0",
        filename="zope_interface-6.0.tar.gz",
        metadata=metadata_text("zope.interface", "6.0", summary="other bytes"),
    )
    assert upload(client, other).status.startswith("400 File already exists ('zope.interface-")
    # .zip and .tar.gz are two files, as are 6.0 and 6.0.0 (two spellings of one release).
    assert stored_files(settings.data_dir) == ["zope-interface/zope.interface-6.0.tar.gz"]


def test_deleted_file_never_returns_with_other_bytes_under_another_spelling(
    client, settings, tmp_path
):
    (tmp_path / "a").mkdir()
    first = legacy_wheel(tmp_path / "a", "Django", "3.2.25", SPELLINGS[0])
    assert upload(client, first).status == "200 OK"
    data_dir = str(settings.data_dir)
    assert main(["delete", "--data-dir", data_dir, "Django", "3.2.25", "--yes"]) == 0
    assert stored_files(settings.data_dir) == []
    other = make_wheel(tmp_path, "django", "3.2.25", padding=10)
    assert other.name == SPELLINGS[1]
    response = upload(client, other)
    assert response.status == (
        "400 This filename was previously used by a file that has since been deleted. "
        "Use a different version."
    )
    # The same bytes may come back (as under the exact name), under either spelling.
    assert upload(client, None, filename=SPELLINGS[1], data=first.read_bytes()).status == "200 OK"
