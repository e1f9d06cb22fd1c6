"""Downloads on the hot path: /files/<project>/<filename> for verified logins, before Flask.

CI fan-out is mostly file downloads; through Flask each one builds a request context, runs
flask-httpauth and the hooks, reads the file row and the project's rights in two statements
and builds a werkzeug Response (issue 14: ~600 requests/s for a 100 KB wheel). Here a
download costs one statement (auth serial, file, visibility and role) and the file is handed
to waitress' wsgi.file_wrapper. It answers when all of these hold:

- GET with no query string, no Range, If-Range or If-Match (Flask answers those: 206, 416,
  412), and no early refusal from the server;
- the Authorization header was verified by this server, from this address, at the current
  auth serial (LoginCache), and permissions.decide allows READ on the file's project;
- the row exists under that project and its file opens (a missing file is Flask's 404 with
  the words that say how to restore it).

The reply is built as files.download builds it through send_file (same headers, same 304
for If-None-Match and If-Modified-Since); tests send each request to both paths and compare.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from werkzeug.http import (
    dump_options_header,
    http_date,
    is_resource_modified,
    quote_etag,
    remove_entity_headers,
)

from ..access.httpauth import EARLY_REFUSAL
from ..access.logincache import VerifiedLogin
from ..access.permissions import Action, Decision, ProjectFacts, decide
from ..context import Services
from ..index.storage import METADATA_SUFFIX
from ..models import FileRecord
from .files import FILE_CACHE_CONTROL
from .objectfiles import REDIRECT_CACHE_CONTROL

FILES_PREFIX = "/files/"
# Flask's default converter: one path segment each.
FILE_PATH = re.compile(r"/files/([^/]+)/([^/]+)")
FILE_RULE = "/files/<project>/<filename>"  # the url_rule metrics label Flask's answers with
# Requests whose answer may be 206, 416 or 412, or was refused before its body was read.
DECLINED_KEYS = ("HTTP_RANGE", "HTTP_IF_RANGE", "HTTP_IF_MATCH", EARLY_REFUSAL)
DIST_TYPE = "application/octet-stream"
METADATA_TYPE = "text/plain; charset=utf-8"  # send_file's "text/plain" as werkzeug sends it


@dataclass(frozen=True)
class FileAnswer:
    """What the hot path sends for one download; `body` is None for a 304."""

    status: int
    headers: list[tuple[str, str]]
    body: IO[bytes] | None
    record: FileRecord
    metadata: bool
    login: VerifiedLogin


def answer_download(svc: Services, environ: dict[str, Any]) -> FileAnswer | None:
    """The download's answer when the hot path may give it, else None (Flask answers)."""
    match = FILE_PATH.fullmatch(environ.get("PATH_INFO", ""))
    authorization = environ.get("HTTP_AUTHORIZATION")
    if (
        match is None
        or not authorization
        or environ.get("REQUEST_METHOD") != "GET"
        or environ.get("QUERY_STRING")
        or any(key in environ for key in DECLINED_KEYS)
    ):
        return None
    login = svc.logins.lookup(authorization, environ.get("REMOTE_ADDR") or "")
    if login is None:
        return None
    project, filename = match.groups()
    metadata = filename.endswith(METADATA_SUFFIX)
    record = _readable_file(svc, login, project, filename.removesuffix(METADATA_SUFFIX))
    if record is None or (metadata and record.metadata_sha256 is None):
        return None
    if metadata:
        path = svc.storage.metadata_path(record.project, record.filename)
        etag, content_type = str(record.metadata_sha256), METADATA_TYPE
    else:
        path = svc.storage.file_path(record.project, record.filename)
        etag, content_type = record.sha256, DIST_TYPE
    if not svc.storage.local and svc.settings.s3_downloads == "redirect":
        return _redirect(svc, path, record, metadata, login)
    try:
        body: IO[bytes] | None = svc.storage.open_read(path)  # waitress closes it
    except OSError:
        return None
    assert body is not None
    try:
        size = body.seek(0, os.SEEK_END)
        body.seek(0)
    except OSError:
        body.close()
        raise
    last_modified = http_date(datetime.fromisoformat(record.upload_time.replace("Z", "+00:00")))
    headers = [
        ("Content-Disposition", dump_options_header("inline", {"filename": path.name})),
        ("Content-Type", content_type),
        ("Content-Length", str(size)),
        ("Last-Modified", last_modified),
        ("Cache-Control", FILE_CACHE_CONTROL),
        ("ETag", quote_etag(etag)),
        ("Date", http_date()),
        ("Accept-Ranges", "bytes"),
        # Uploaded bytes are never a page or a script: a browser must not sniff them into one.
        ("X-Content-Type-Options", "nosniff"),
    ]
    status = 200
    if not is_resource_modified(environ, quote_etag(etag), last_modified=last_modified):
        status = 304
        remove_entity_headers(headers)  # as werkzeug does for a 304
        body.close()
        body = None
    return FileAnswer(status, headers, body, record, metadata, login)


def _redirect(
    svc: Services, path: Path, record: FileRecord, metadata: bool, login: VerifiedLogin
) -> FileAnswer | None:
    """S3 storage, --s3-downloads redirect: the 302 to a presigned URL (objectfiles)."""
    try:
        url = svc.storage.download_url(path, svc.settings.s3_url_expiry)
    except OSError:
        return None  # Flask answers, and says what failed
    headers = [
        ("Location", url),
        ("Content-Length", "0"),
        ("Cache-Control", REDIRECT_CACHE_CONTROL),
        ("Date", http_date()),
        ("X-Content-Type-Options", "nosniff"),
    ]
    return FileAnswer(302, headers, None, record, metadata, login)


def _readable_file(
    svc: Services, login: VerifiedLogin, project: str, filename: str
) -> FileRecord | None:
    """The file's row when `login` is still valid and may read its project, in one statement."""
    user = login.principal.user
    auth_serial, record, visibility, role = svc.db.file_with_role_at(
        filename, user.id if user else None
    )
    if auth_serial != login.auth_serial or record is None or record.project != project:
        return None
    facts = ProjectFacts(name=record.project, exists=True, visibility=visibility, role=role)
    if decide(login.principal, Action.READ, facts) is not Decision.ALLOW:
        return None
    return record
