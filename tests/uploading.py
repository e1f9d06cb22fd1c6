"""Helpers for route tests: a hand-built multipart body (full control over each part's headers,
as real clients differ there) and an upload call through the Flask test client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from conftest import basic
from flask.testing import FlaskClient
from s3_support import BUCKET, stored_keys, stored_object
from werkzeug.test import TestResponse

BOUNDARY = "teamindex-test-boundary-7d2a"
OCTET_STREAM = "application/octet-stream"


def encode_multipart(
    fields: Iterable[tuple[str, str]],
    file: tuple[str, bytes, str | None] | None = None,
) -> tuple[bytes, str]:
    """(body, content type) for form fields plus an optional `content` part given as
    (filename, bytes, part content type or None for no Content-Type header, as uv sends)."""
    chunks: list[bytes] = []
    for name, value in fields:
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if file is not None:
        filename, data, part_type = file
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')  # RFC 7230 quoted-string
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="content"; filename="{quoted}"\r\n'
        )
        if part_type is not None:
            head += f"Content-Type: {part_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={BOUNDARY}"


def upload_fields(data: bytes, **overrides: str | None) -> list[tuple[str, str]]:
    """The fields twine sends (sha256 digest of *data*); an override of None drops a field."""
    fields: dict[str, str | None] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    fields.update(overrides)
    return [(name, value) for name, value in fields.items() if value is not None]


def upload(
    client: FlaskClient,
    path: Path | None,
    user: str | None = "alice",
    *,
    data: bytes | None = None,
    filename: str | None = None,
    part_type: str | None = OCTET_STREAM,
    url: str = "/legacy/",
    fields: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **overrides: str | None,
) -> TestResponse:
    """POST a distribution like twine does. `path` None sends no file part at all."""
    if data is None:
        data = path.read_bytes() if path is not None else b""
    if fields is None:
        fields = upload_fields(data, **overrides)
    file = None
    if path is not None or filename is not None:
        name = filename if filename is not None else path.name  # type: ignore[union-attr]
        file = (name, data, part_type)
    body, content_type = encode_multipart(fields, file)
    all_headers = dict(basic(user)) if user else {}
    all_headers.update(headers or {})
    return client.post(url, data=body, content_type=content_type, headers=all_headers)


def stored_files(data_dir: Path) -> list[str]:
    """Every file under packages/ (relative paths), sorted; the bucket's objects when the
    data dir keeps its files in S3 (TEAMINDEX_TEST_STORAGE=s3)."""
    in_bucket = stored_keys(data_dir)
    if in_bucket is not None:
        return in_bucket
    root = data_dir / "packages"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def stored_bytes(data_dir: Path, relative: str) -> bytes:
    """The bytes of a stored file (`project/filename`), on disk or in the bucket."""
    found = stored_object(data_dir, relative)
    if found is None:
        return (data_dir / "packages" / relative).read_bytes()
    client, key = found
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def remove_stored(data_dir: Path, relative: str) -> None:
    """Lose a stored file behind the index's back (a disk or bucket accident)."""
    found = stored_object(data_dir, relative)
    if found is None:
        (data_dir / "packages" / relative).unlink()
        return
    client, key = found
    client.delete_object(Bucket=BUCKET, Key=key)


def stored_version(data_dir: Path, relative: str) -> tuple[object, ...]:
    """What changes when a stored file is written again (inode and mtime; the object's
    ETag and Last-Modified)."""
    found = stored_object(data_dir, relative)
    if found is None:
        stat = (data_dir / "packages" / relative).stat()
        return stat.st_ino, stat.st_mtime_ns
    client, key = found
    head = client.head_object(Bucket=BUCKET, Key=key)
    return head["ETag"], head["LastModified"]


def temp_files(data_dir: Path) -> list[str]:
    """Files under tmp/ other than a process's owner lock (`owner-*.lock`): upload debris."""
    return sorted(p.name for p in (data_dir / "tmp").iterdir() if p.suffix != ".lock")
