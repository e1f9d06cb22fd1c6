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

With an upstream, a file that is not hosted under that project may be a cached upstream one
(issue 13). It is answered here under the read decision of api/proxy.locate, on facts from
one more statement (auth and rules serials, the local row and role): the name is not LOCAL,
the reader may read it, upstream's page is in memory and usable as it is (pages.peek: fresh,
or stale while upstream is given time), it lists the file, the cooldown shows it, and its
verified copy opens. Anything else (a first download, a page past its TTL, a held-back file,
a file without upload-time) is Flask's. Its LRU mark is refreshed at most once a minute
(FileCache.touch).

The reply is built as files.download builds it through send_file (same headers, same 304
for If-None-Match and If-Modified-Since); tests send each request to both paths and compare.
With a front server (`--accel-redirect`) a hosted file's 200 is files.front_sends' answer,
no body and the file named for the front: Caddy, which keeps no decision, asks for every
download, and this is the cheap way to answer it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from packaging.utils import canonicalize_name
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
from ..upstream import Origin, Visibility
from . import proxy
from .files import FILE_CACHE_CONTROL, front_headers
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
    project: str
    filename: str  # the distribution's (without .metadata)
    metadata: bool
    login: VerifiedLogin


@dataclass(frozen=True)
class Readable:
    """A file the login may read, as files.download would send it."""

    path: Path
    etag: str
    content_type: str
    last_modified: datetime
    upstream: bool  # a cached upstream file (its cache mark is refreshed when sent)


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
    dist_name = filename.removesuffix(METADATA_SUFFIX)
    found = _readable_file(svc, login, project, dist_name, metadata)
    if found is None:
        return None
    if not found.upstream and not svc.storage.local and svc.settings.s3_downloads == "redirect":
        return _redirect(svc, found.path, project, dist_name, metadata, login)
    # With a front server a hosted file is named, not sent (files.front_sends).
    accel = svc.settings.accel_redirect if not found.upstream else ""
    body: IO[bytes] | None = None
    if accel:
        if not found.path.is_file():
            return None  # Flask's 404 says how to restore it
        size = 0
    else:
        body, size = _opened(svc, found)
        if body is None:
            return None
    if body is not None and found.upstream and svc.upstream is not None:
        svc.upstream.files.touch(found.path, os.fstat(body.fileno()).st_mtime)
        svc.upstream.stats.add("metadata" if metadata else "file", "hit")
    last_modified = http_date(found.last_modified)
    headers = [
        ("Content-Disposition", dump_options_header("inline", {"filename": filename})),
        ("Content-Type", found.content_type),
        ("Content-Length", str(size)),
        ("Last-Modified", last_modified),
        ("Cache-Control", FILE_CACHE_CONTROL),
        ("ETag", quote_etag(found.etag)),
        ("Date", http_date()),
        ("Accept-Ranges", "bytes"),
        # Uploaded bytes are never a page or a script: a browser must not sniff them into one.
        ("X-Content-Type-Options", "nosniff"),
    ]
    status = 200
    if not is_resource_modified(environ, quote_etag(found.etag), last_modified=last_modified):
        status = 304
        remove_entity_headers(headers)  # as werkzeug does for a 304
        if body is not None:
            body.close()
        body = None
    elif accel:
        headers += front_headers(accel, found.path)
    return FileAnswer(status, headers, body, project, dist_name, metadata, login)


def _opened(svc: Services, found: Readable) -> tuple[IO[bytes] | None, int]:
    """The file open for waitress to send (it closes it), and its size; None if it cannot
    be opened (Flask answers)."""
    try:
        # the upstream proxy's cache is always on local disk
        body = open(found.path, "rb") if found.upstream else svc.storage.open_read(found.path)  # noqa: SIM115
    except OSError:
        return None, 0
    try:
        size = body.seek(0, os.SEEK_END)
        body.seek(0)
    except OSError:
        body.close()
        raise
    return body, size


def _redirect(
    svc: Services, path: Path, project: str, dist_name: str, metadata: bool, login: VerifiedLogin
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
    return FileAnswer(302, headers, None, project, dist_name, metadata, login)


def _readable_file(
    svc: Services, login: VerifiedLogin, project: str, dist_name: str, metadata: bool
) -> Readable | None:
    """The hosted file `dist_name` of `project` (or its .metadata) when `login` is still
    valid and may read it, in one statement; with an upstream, else a cached upstream one."""
    user = login.principal.user
    auth_serial, record, visibility, role = svc.db.file_with_role_at(
        dist_name, user.id if user else None
    )
    if auth_serial != login.auth_serial:
        return None
    if record is None or record.project != project:
        if svc.upstream is None or not dist_name.isascii():  # send_file's plain filename=
            return None
        return _cached_upstream_file(svc, login, project, dist_name, metadata)
    facts = ProjectFacts(name=record.project, exists=True, visibility=visibility, role=role)
    if decide(login.principal, Action.READ, facts) is not Decision.ALLOW:
        return None
    upload_time = datetime.fromisoformat(record.upload_time.replace("Z", "+00:00"))
    if not metadata:
        path = svc.storage.file_path(record.project, record.filename)
        return Readable(path, record.sha256, DIST_TYPE, upload_time, upstream=False)
    if record.metadata_sha256 is None:
        return None
    path = svc.storage.metadata_path(record.project, record.filename)
    return Readable(path, record.metadata_sha256, METADATA_TYPE, upload_time, upstream=False)


def _cached_upstream_file(
    svc: Services, login: VerifiedLogin, project: str, dist_name: str, metadata: bool
) -> Readable | None:
    """A cached upstream file under api/proxy.locate's decision, from memory and one
    statement; None for anything that needs upstream, the disk's page copy, or a refusal."""
    upstream = svc.upstream
    assert upstream is not None
    if canonicalize_name(project) != project:
        return None  # not the proxy's (api/proxy._target)
    user = login.principal.user
    auth_serial, upstream_serial, local, role = svc.db.proxy_facts_at(
        project, user.id if user else None
    )
    if auth_serial != login.auth_serial:
        return None
    rules = upstream.rules.at(upstream_serial)
    if upstream.origin(project, local is not None, rules) is Origin.LOCAL:
        return None
    if not proxy.may_read(login.principal, project, local, role):
        return None
    page = upstream.pages.peek(project)
    if page is None or page.missing:
        return None
    found = page.file(dist_name)
    if found is None or found.upload_time is None:
        return None  # send_file dates a file without upload-time by its mtime (the LRU mark)
    if upstream.visibility(project, found, rules) is not Visibility.SHOWN:
        return None
    if not metadata:
        path = upstream.files.path(found.sha256)
        return Readable(path, found.sha256, DIST_TYPE, found.upload_time, upstream=True)
    if found.metadata_sha256 is None:
        return None
    path = upstream.files.metadata_path(found.metadata_sha256)
    return Readable(path, found.metadata_sha256, METADATA_TYPE, found.upload_time, upstream=True)
