"""The legacy upload API: each refusal's status line and body, and that it stores nothing."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import claim_zip_directory, make_sdist, make_wheel, metadata_text, tar_bomb
from conftest import add_token, basic
from uploading import (
    encode_multipart,
    remove_stored,
    stored_bytes,
    stored_files,
    stored_version,
    temp_files,
    upload,
    upload_fields,
)

from teamindex.config import Settings
from teamindex.index.storage import TempFiles

WHEEL = "foo-1.0-py3-none-any.whl"
JSON = "application/vnd.pypi.simple.v1+json"
GONE = "Project pre-registration is no longer required or supported, upload your files instead."


def assert_error(response, status: int, message: str) -> None:
    """The message in both the reason phrase and the text/plain body (PROTOCOL.md 6.10)."""
    assert response.status == f"{status} {message}"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.get_data(as_text=True) == message + "\n"


def assert_nothing_stored(client, settings: Settings, project: str = "foo") -> None:
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    assert client.get(f"/simple/{project}/", headers=basic("alice")).status_code == 404
    root = client.get("/simple/", headers={**basic("alice"), "Accept": JSON})
    assert root.json["projects"] == []


def project_json(client, project: str = "foo") -> dict:
    response = client.get(f"/simple/{project}/", headers={**basic("alice"), "Accept": JSON})
    assert response.status_code == 200
    return response.json


def corrupt_member(path: Path, member: str) -> Path:
    """Overwrite a zip member's compressed bytes with 0xFF (an invalid deflate block type)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start : start + info.compress_size] = b"\xff" * info.compress_size
    path.write_bytes(bytes(data))
    return path


def wheel_bytes(directory: Path, name: str = "foo", version: str = "1.0") -> bytes:
    """A wheel's bytes, built aside so the test directory keeps only what a case uploads."""
    aside = directory / "aside"
    aside.mkdir(exist_ok=True)
    return make_wheel(aside, name, version).read_bytes()


def two_top_dirs_sdist(directory: Path) -> Path:
    path = directory / "foo-1.0.tar.gz"
    pkg_info = metadata_text("foo", "1.0").encode()
    with tarfile.open(path, "w:gz") as archive:
        for member in ("foo-1.0/PKG-INFO", "evil/PKG-INFO"):
            info = tarfile.TarInfo(member)
            info.size = len(pkg_info)
            archive.addfile(info, io.BytesIO(pkg_info))
    return path


# -- refusals -----------------------------------------------------------------------------

# (id, build the file in tmp_path -> upload() kwargs, status, message or None for "prefix")
REFUSALS: list[tuple[str, Callable[[Path], dict], int, str]] = [
    ("no content part", lambda d: {"path": None}, 400, "Upload payload does not have a file."),
    (
        "content with empty filename",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": ""},
        400,
        "Upload payload does not have a file.",
    ),
    (
        "no digest",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "sha256_digest": None},
        400,
        "Error: Include at least one message digest.",
    ),
    (
        "empty digests (pdm)",
        lambda d: {
            "path": make_wheel(d, "foo", "1.0"),
            "sha256_digest": "",
            "md5_digest": "",
            "blake2_256_digest": " ",
        },
        400,
        "Error: Include at least one message digest.",
    ),
    (
        "wrong sha256",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "sha256_digest": "0" * 64},
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    ),
    (
        "right sha256, wrong md5",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "md5_digest": "0" * 32},
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    ),
    (
        "right sha256, wrong blake2_256",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "blake2_256_digest": "ab" * 32},
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    ),
    (
        "bad extension",
        lambda d: {"path": make_wheel(d, "foo", "1.0", filename="foo-1.0.exe")},
        400,
        "Invalid file extension: Use .tar.gz, .whl or .zip extension. "
        "See https://peps.python.org/pep-0527 for more information.",
    ),
    (
        "traversal ../x.whl",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": "../x.whl"},
        400,
        "Cannot upload a file with '/' or '\\' in the name.",
    ),
    (
        "traversal to the database",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": "../../teamindex.sqlite3"},
        400,
        "Cannot upload a file with '/' or '\\' in the name.",
    ),
    (
        "slash a/b.whl",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": "a/b.whl"},
        400,
        "Cannot upload a file with '/' or '\\' in the name.",
    ),
    (
        "backslash",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": "..\\foo-1.0.tar.gz"},
        400,
        "Cannot upload a file with '/' or '\\' in the name.",
    ),
    (
        "dot name",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filename": ".."},
        400,
        "Invalid distribution filename: '..'",
    ),
    (
        # A legacy spelling is accepted (issue 12), but never one of another project.
        "legacy wheel name of another project",
        lambda d: {
            "path": make_wheel(d, "Bar", "1.0", legacy=True, metadata=metadata_text("foo", "1.0"))
        },
        400,
        "Name in metadata 'foo' does not match the filename 'Bar-1.0-py3-none-any.whl' "
        "(project 'bar').",
    ),
    (
        "form name differs from filename",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "name": "bar"},
        400,
        f"Name 'bar' does not match the filename '{WHEEL}'.",
    ),
    (
        "form version differs from filename",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "version": "2.0"},
        400,
        f"Version '2.0' does not match the filename '{WHEEL}'.",
    ),
    (
        "form version invalid",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "version": "one"},
        400,
        "Invalid version 'one'.",
    ),
    (
        "filetype differs from extension",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "filetype": "sdist"},
        400,
        f"Invalid file extension: Extension of '{WHEEL}' is invalid for filetype sdist.",
    ),
    (
        "metadata name differs",
        lambda d: {"path": make_wheel(d, "foo", "1.0", metadata=metadata_text("bar", "1.0"))},
        400,
        f"Name in metadata 'bar' does not match the filename '{WHEEL}' (project 'foo').",
    ),
    (
        "metadata version differs",
        lambda d: {"path": make_wheel(d, "foo", "1.0", metadata=metadata_text("foo", "1.1"))},
        400,
        "Version in filename should be '1.1' not '1.0'.",
    ),
    (
        "sdist metadata version differs",
        lambda d: {"path": make_sdist(d, "foo", "1.0", metadata=metadata_text("foo", "2.0"))},
        400,
        "Version in filename should be '2.0' not '1.0'.",
    ),
    (
        "truncated wheel",
        lambda d: {"path": None, "filename": WHEEL, "data": wheel_bytes(d)[:300]},
        400,
        "Invalid distribution file. File is not a zipfile: File is not a zip file",
    ),
    (
        "not a zip",
        lambda d: {"path": None, "filename": WHEEL, "data": b"#!/bin/sh\necho hi\n"},
        400,
        "Invalid distribution file. File is not a zipfile: File is not a zip file",
    ),
    (
        "not a tarball",
        lambda d: {"path": None, "filename": "foo-1.0.tar.gz", "data": b"plain text"},
        400,
        "Invalid distribution file. File is not a tarfile: not a gzip file",
    ),
    (
        "wheel without RECORD",
        lambda d: {"path": make_wheel(d, "foo", "1.0", omit=["RECORD"])},
        400,
        f"Wheel '{WHEEL}' does not contain the required RECORD file: foo-1.0.dist-info/RECORD",
    ),
    (
        "wheel without METADATA",
        lambda d: {"path": make_wheel(d, "foo", "1.0", omit=["METADATA"])},
        400,
        f"Wheel '{WHEEL}' does not contain the required METADATA file: foo-1.0.dist-info/METADATA",
    ),
    (
        "corrupt deflate data in METADATA",
        lambda d: {
            "path": corrupt_member(make_wheel(d, "foo", "1.0"), "foo-1.0.dist-info/METADATA")
        },
        400,
        "Invalid distribution file. Error -3 while decompressing data: invalid block type",
    ),
    (
        "sdist with two top-level dirs",
        lambda d: {"path": two_top_dirs_sdist(d)},
        400,
        "Invalid distribution file. Incorrect number of top-level directories in foo-1.0.tar.gz",
    ),
    (
        ":action submit",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), ":action": "submit"},
        410,
        GONE,
    ),
    (
        ":action submit_pkg_info",
        lambda d: {"path": None, ":action": "submit_pkg_info"},
        410,
        GONE,
    ),
    (
        ":action doc_upload",
        lambda d: {"path": None, ":action": "doc_upload"},
        410,
        "Uploading documentation is not supported by the legacy API.",
    ),
    (
        "no :action",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), ":action": None},
        400,
        "Unknown or missing :action None; expected 'file_upload'.",
    ),
    (
        "protocol_version 2",
        lambda d: {"path": make_wheel(d, "foo", "1.0"), "protocol_version": "2"},
        400,
        "Unknown protocol version.",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "message"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_refused_upload_stores_nothing(client, settings, tmp_path, build, status, message):
    kwargs = build(tmp_path)
    response = upload(client, **kwargs)
    assert_error(response, status, message)
    assert_nothing_stored(client, settings)


def test_truncated_wheel_at_many_lengths_is_400(client, settings, tmp_path):
    data = make_wheel(tmp_path, "foo", "1.0").read_bytes()
    for cut in (1, 22, len(data) // 2, len(data) - 22, len(data) - 1):
        response = upload(client, None, filename=WHEEL, data=data[:cut])
        assert response.status_code == 400, cut
        assert response.status.startswith("400 Invalid distribution file.")
    assert_nothing_stored(client, settings)


def test_reason_phrase_is_latin1_single_line_and_body_keeps_the_text(client, settings, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    response = upload(client, path, name="名前")
    message = f"Name '名前' does not match the filename '{WHEEL}'."
    assert response.status == f"400 Name '??' does not match the filename '{WHEEL}'."
    response.status.encode("iso-8859-1")
    assert response.get_data(as_text=True) == message + "\n"
    long_name = "x" * 500
    response = upload(client, path, name=long_name)
    body = response.get_data(as_text=True)
    assert body == f"Name '{long_name}' does not match the filename '{WHEEL}'.\n"
    assert response.status == "400 " + body.strip()[:300]
    assert "\n" not in response.status
    assert_nothing_stored(client, settings)


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice", "wrong-password"), basic("nobody"), {"Authorization": "Basic !!"}],
    ids=["no credentials", "wrong password", "unknown user", "garbage header"],
)
def test_upload_without_valid_credentials_is_401(client, settings, tmp_path, headers):
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"), user=None, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    assert_nothing_stored(client, settings)


def test_anonymous_read_does_not_allow_anonymous_upload(make_app, tmp_path):
    app = make_app(anonymous_read=True)
    client = app.test_client()
    assert client.get("/simple/").status_code == 200  # reading is open...
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"), user=None)
    assert_error(response, 401, "Uploading needs credentials.")  # ...writing is not
    assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    assert stored_files(app.extensions["teamindex"].settings.data_dir) == []


def test_first_uploader_owns_the_project(client, settings, tmp_path):
    assert upload(client, make_wheel(tmp_path, "foo", "1.0"), "alice").status == "200 OK"
    response = upload(client, make_wheel(tmp_path, "foo", "1.1"), "bob")
    assert_error(response, 403, "The user 'bob' isn't allowed to upload to project 'foo'.")
    assert "foo-1.1-py3-none-any.whl" not in stored_files(settings.data_dir).__str__()
    # Another spelling of the same project is the same project.
    response = upload(client, make_sdist(tmp_path, "Foo", "1.1"), "bob")
    assert response.status_code == 403
    assert upload(client, make_wheel(tmp_path, "foo", "1.1"), "alice").status == "200 OK"
    assert upload(client, make_wheel(tmp_path, "foo", "1.2"), "root").status == "200 OK"  # admin
    assert project_json(client)["versions"] == ["1.0", "1.1", "1.2"]
    # bob owns what bob creates, and alice cannot upload there.
    assert upload(client, make_wheel(tmp_path, "bar", "1.0"), "bob").status == "200 OK"
    response = upload(client, make_wheel(tmp_path, "bar", "2.0"), "alice")
    assert_error(response, 403, "The user 'alice' isn't allowed to upload to project 'bar'.")
    assert temp_files(settings.data_dir) == []


# -- success --------------------------------------------------------------------------------


def test_upload_wheel_stores_file_metadata_and_row(client, settings, tmp_path):
    path = make_wheel(tmp_path, "Foo", "1.0", requires_python=">=3.9")
    response = upload(client, path, name="Foo", version="1.0", filetype="bdist_wheel")
    assert response.status == "200 OK"
    assert response.data == b""
    assert stored_files(settings.data_dir) == [f"foo/{WHEEL}", f"foo/{WHEEL}.metadata"]
    assert temp_files(settings.data_dir) == []
    assert stored_bytes(settings.data_dir, f"foo/{WHEEL}") == path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        metadata = archive.read("foo-1.0.dist-info/METADATA")
    assert stored_bytes(settings.data_dir, f"foo/{WHEEL}.metadata") == metadata
    [entry] = project_json(client)["files"]
    assert entry["filename"] == WHEEL
    assert entry["hashes"] == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert entry["size"] == path.stat().st_size
    assert entry["requires-python"] == ">=3.9"
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}


def test_upload_sdist_has_no_metadata_file(client, settings, tmp_path):
    path = make_sdist(tmp_path, "foo", "1.0")
    assert upload(client, path, filetype="sdist", pyversion="source").status == "200 OK"
    assert stored_files(settings.data_dir) == ["foo/foo-1.0.tar.gz"]
    [entry] = project_json(client)["files"]
    assert "core-metadata" not in entry


@pytest.mark.parametrize("name", ["Foo-Bar", "Foo_Bar", "foo.bar", "FOO-BAR"])
def test_form_name_in_any_spelling_of_the_project(client, tmp_path, name):
    # twine sends "Foo-Bar" for Foo_Bar; uv, poetry, pdm and hatch the raw Name (PROTOCOL 3.1).
    path = make_wheel(tmp_path, "Foo_Bar", "1.0")
    assert upload(client, path, name=name, version="1.0.0").status == "200 OK"
    assert project_json(client, "foo-bar")["files"][0]["filename"] == path.name


@pytest.mark.parametrize("url", ["/legacy/", "/legacy", "/"])
def test_upload_urls_accept_post_without_redirect(client, settings, tmp_path, url):
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"), url=url)
    assert response.status == "200 OK"
    assert "Location" not in response.headers
    assert [f["filename"] for f in project_json(client)["files"]] == [WHEEL]


def test_action_in_query_string(client, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    fields = upload_fields(path.read_bytes(), **{":action": None})
    response = upload(client, path, fields=fields, url="/legacy/?:action=file_upload")
    assert response.status == "200 OK"


@pytest.mark.parametrize("url", ["/legacy/", "/legacy"])
def test_get_upload_url_is_405(client, url):
    response = client.get(url, headers=basic("alice"))
    assert_error(
        response, 405, "This is the upload URL; POST distributions here. Install from /simple/."
    )


def test_large_description_field_accepted(client, tmp_path):
    description = "# README\n" + "lorem ipsum dolor sit amet " * 23_000  # ~600 KB
    assert len(description.encode()) > 600_000
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"), description=description)
    assert response.status == "200 OK"


def test_content_part_without_content_type_accepted(client, tmp_path):
    # uv sends the file part with no Content-Type header (PROTOCOL.md 6.1).
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"), part_type=None)
    assert response.status == "200 OK"
    assert project_json(client)["files"][0]["filename"] == WHEEL


def test_pdm_style_empty_fields_accepted(client, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    empties = {
        name: ""
        for name in (
            "name",
            "version",
            "filetype",
            "pyversion",
            "md5_digest",
            "blake2_256_digest",
            "author",
            "description",
            "license_expression",
            "comment",
            "requires_python",
            "provides_extras",
        )
    }
    response = upload(client, path, **empties, summary="UNKNOWN", home_page="UNKNOWN")
    assert response.status == "200 OK"


def test_every_client_digest_and_uppercase_hex_accepted(client, tmp_path):
    data = make_wheel(tmp_path, "foo", "1.0").read_bytes()
    response = upload(
        client,
        tmp_path / WHEEL,
        sha256_digest=hashlib.sha256(data).hexdigest().upper(),
        md5_digest=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        blake2_256_digest=hashlib.blake2b(data, digest_size=32).hexdigest(),
        attestations="[]",
    )
    assert response.status == "200 OK"


def test_identical_reupload_is_200_and_changes_nothing(client, settings, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    assert upload(client, path).status == "200 OK"
    before_version = stored_version(settings.data_dir, f"foo/{WHEEL}")
    before = client.get("/simple/foo/", headers=basic("alice"))
    response = upload(client, path)
    assert response.status == "200 OK"
    assert response.get_data(as_text=True) == f"{WHEEL} already exists with the same content."
    after = client.get("/simple/foo/", headers=basic("alice"))
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.data == before.data
    assert stored_version(settings.data_dir, f"foo/{WHEEL}") == before_version
    assert stored_files(settings.data_dir) == [f"foo/{WHEEL}", f"foo/{WHEEL}.metadata"]
    assert temp_files(settings.data_dir) == []


def test_identical_reupload_restores_a_file_missing_from_disk(client, settings, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    assert upload(client, path).status == "200 OK"
    remove_stored(settings.data_dir, f"foo/{WHEEL}")
    assert client.get(f"/files/foo/{WHEEL}", headers=basic("alice")).status_code == 404
    assert upload(client, path).status == "200 OK"
    assert stored_bytes(settings.data_dir, f"foo/{WHEEL}") == path.read_bytes()
    assert temp_files(settings.data_dir) == []


def test_same_filename_other_bytes_is_refused(client, settings, tmp_path):
    original = wheel_bytes(tmp_path)
    assert upload(client, None, filename=WHEEL, data=original).status == "200 OK"
    other = make_wheel(tmp_path, "foo", "1.0", padding=10).read_bytes()
    assert other != original
    before = project_json(client)
    response = upload(client, None, filename=WHEEL, data=other)
    sha = hashlib.sha256(original).hexdigest()
    assert_error(
        response,
        400,
        f"File already exists ('{WHEEL}', with sha256 hash '{sha}'). A filename can only ever "
        "hold one content; upload a new version.",
    )
    assert "File already exists" in response.status
    assert stored_bytes(settings.data_dir, f"foo/{WHEEL}") == original
    assert project_json(client) == before
    assert temp_files(settings.data_dir) == []


def test_same_bytes_under_another_filename_is_refused(client, settings, tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    assert upload(client, path).status == "200 OK"
    before = project_json(client)
    response = upload(client, path, filename="foo-1.0-py2.py3-none-any.whl")
    assert_error(response, 400, f"File already exists: these bytes were uploaded as '{WHEEL}'.")
    assert project_json(client) == before
    assert stored_files(settings.data_dir) == [f"foo/{WHEEL}", f"foo/{WHEEL}.metadata"]
    assert temp_files(settings.data_dir) == []


# -- size limits ------------------------------------------------------------------------------


def test_file_over_max_upload_size_is_413(make_app, tmp_path):
    app = make_app(max_upload_size=4096)
    client = app.test_client()
    big = make_wheel(tmp_path, "foo", "1.0", padding=0)
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("foo/blob.bin", os.urandom(8192))
    response = upload(client, big)
    assert_error(response, 413, "File too large. Limit is 4096 bytes.")
    data_dir = app.extensions["teamindex"].settings.data_dir
    assert stored_files(data_dir) == []
    assert temp_files(data_dir) == []
    # A file under the limit still goes through.
    assert upload(client, make_wheel(tmp_path, "bar", "1.0")).status == "200 OK"


def test_request_over_max_content_length_is_413(app, client, settings, tmp_path):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    path = make_wheel(tmp_path, "foo", "1.0")
    response = upload(client, path, data=path.read_bytes() + os.urandom(4096))
    assert_error(response, 413, "Upload too large for this index.")
    app.config["MAX_CONTENT_LENGTH"] = None
    assert_nothing_stored(client, settings)


def test_multipart_helper_sends_part_without_type():
    body, content_type = encode_multipart([("a", "b")], ("x.whl", b"data", None))
    assert content_type.startswith("multipart/form-data; boundary=")
    assert b'filename="x.whl"\r\n\r\ndata' in body
    assert b"Content-Type" not in body


def test_archive_bombs_are_refused_with_400(client, settings, tmp_path):
    """Issue 10 (medium 7): a 2 MB sdist inflating to 2 GB and a wheel whose zip directory
    claims a million entries: a one-line 400, nothing stored, in well under a second."""
    bombs = [
        tar_bomb(tmp_path, "foo", "1.0", inflated=2 << 30),
        claim_zip_directory(make_wheel(tmp_path, "foo", "1.0"), entries=1_000_000),
    ]
    for bomb in bombs:
        started = time.monotonic()
        response = upload(client, bomb)
        assert response.status_code == 400, response.status
        assert response.status.startswith("400 Invalid distribution file.")
        assert time.monotonic() - started < 3
    assert_nothing_stored(client, settings)


def _many_file_parts(count: int, size: int) -> tuple[bytes, str]:
    fields = upload_fields(b"")
    body, content_type = encode_multipart(fields)
    boundary = content_type.split("boundary=")[1]
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{WHEEL}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + b"\0" * size
        + b"\r\n"
    )
    closing = f"--{boundary}--\r\n".encode()
    return body.removesuffix(closing) + part * count + closing, content_type


@pytest.mark.parametrize("url", ["/legacy/", "/"])
def test_read_token_is_refused_before_the_form_is_parsed(app, client, settings, monkeypatch, url):
    """Issue 10 (low 15): a read-only token posting thousands of file parts made the server
    write them all to tmp/ before the permission check. Now: 403 from the headers alone."""
    created = []
    real_new_temp = TempFiles.new_temp
    monkeypatch.setattr(
        TempFiles, "new_temp", lambda self: created.append(1) or real_new_temp(self)
    )
    _id, secret = add_token(app, "alice", scope="read")
    body, content_type = _many_file_parts(2000, 1000)
    started = time.monotonic()
    response = client.post(
        url, data=body, content_type=content_type, headers=basic("__token__", secret)
    )
    # The token is blamed, not alice (deliberate change, issue 12).
    assert response.status == (
        f"403 This token (id {_id}, scope read) cannot upload; create a token with scope"
        " upload on your account page or with: teamindex token create alice --scope upload"
    )
    assert created == []
    assert temp_files(settings.data_dir) == []
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("credential", ["password", "upload-token"])
def test_more_than_one_file_part_is_refused(app, client, settings, monkeypatch, credential):
    created = []
    real_new_temp = TempFiles.new_temp
    monkeypatch.setattr(
        TempFiles, "new_temp", lambda self: created.append(1) or real_new_temp(self)
    )
    headers = basic("alice")
    if credential == "upload-token":
        headers = basic("__token__", add_token(app, "alice", scope="upload")[1])
    body, content_type = _many_file_parts(500, 1000)
    response = client.post("/legacy/", data=body, content_type=content_type, headers=headers)
    assert_error(response, 400, "Too many file parts: send one file, as the field 'content'.")
    assert len(created) == 1
    assert_nothing_stored(client, settings)
