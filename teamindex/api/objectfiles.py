"""Downloads from an object store (`--storage s3://...`), after files.download's checks.

Two ways, by `--s3-downloads`:
- redirect (default): a 302 to a presigned GET URL for this one object, valid for
  `--s3-url-expiry` seconds. pip, uv and poetry follow it without sending their index
  credentials to the other host (requests and httpx drop Authorization on a redirect to
  another origin), and the bytes never pass through this process. The URL is the
  capability: it is only ever made after the READ check, and expires.
- stream: the bytes pass through, with the headers send_file gives a local file
  (Content-Length, the sha256 ETag, Last-Modified, conditional GET) and single Range
  requests, each one ranged GET on the store. For stores clients cannot reach.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import IO

from flask import Response, redirect, request
from werkzeug.wsgi import wrap_file

from ..context import services

# The answer names a URL that expires: nobody may keep it.
REDIRECT_CACHE_CONTROL = "private, no-store"
STREAM_BLOCK = 1 << 16


def redirect_to_store(path: Path) -> Response:
    """302 to a short-lived presigned URL for the stored file."""
    svc = services()
    url = svc.storage.download_url(path, svc.settings.s3_url_expiry)
    response = redirect(url, 302)
    response.headers["Cache-Control"] = REDIRECT_CACHE_CONTROL
    return response


def stream_from_store(path: Path, *, mimetype: str, etag: str, last_modified: datetime) -> Response:
    """The stored bytes through this process, as send_file sends a local file."""
    body = services().storage.open_read(path)  # FileNotFoundError: the caller's 404
    return stream_response(
        body, path.name, mimetype=mimetype, etag=etag, last_modified=last_modified
    )


def stream_response(
    body: IO[bytes], name: str, *, mimetype: str, etag: str, last_modified: datetime | None
) -> Response:
    """A seekable reader's bytes with send_file's headers, 304s and single ranges."""
    size = body.seek(0, io.SEEK_END)
    body.seek(0)
    response = Response(
        wrap_file(request.environ, body, buffer_size=STREAM_BLOCK),
        mimetype=mimetype,
        direct_passthrough=True,
    )
    response.content_length = size
    response.headers.set("Content-Disposition", "inline", filename=name)
    response.set_etag(etag)
    response.last_modified = last_modified
    return response.make_conditional(request.environ, accept_ranges=True, complete_length=size)
