"""File downloads: /files/<project>/<filename> and its PEP 658 `.metadata` twin.

The path on disk comes from the database row, never from the URL; the URL only selects the
row. Files stream from disk through waitress' file wrapper with Content-Length, a strong
ETag (the sha256), Last-Modified, conditional GET and single Range requests (uv and poetry
read wheel metadata by range when no .metadata is advertised).

Who may download: Basic auth, exactly as for pip, uv and poetry (401 with a challenge when
no credentials come). A request without an Authorization header may instead carry the web
session, so the links on the project pages work in a logged-in browser; the same READ rule
applies, and no cookie is ever set here.

With a front server (`serve --accel-redirect /_protected/`, config from `teamindex
nginx-config`) the checks stay here and nginx sends the bytes: a 200 or 206 becomes an
empty answer naming the file in `X-Accel-Redirect`, with the headers Flask would have sent
(a 304 is still answered here). nginx also asks /_accel/files/... (front_check) before a
download and remembers a yes for a few seconds per credential, address and file, so repeat
downloads cost no Python request; anything but a yes sends nginx back to /files/ here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, g, request, send_file
from werkzeug.http import http_date

from ..access.httpauth import authorize, client_ip, login_required
from ..access.permissions import Action, Principal
from ..context import services
from ..errors import HTTPError
from ..index.storage import METADATA_SUFFIX
from ..models import FileRecord
from ..ops.front import FILE_HEADER, FRONT_CHECK_PREFIX, RANGES_HEADER
from ..web.session import session_reader
from . import objectfiles, proxy

bp = Blueprint("files", __name__)

# A filename never changes its bytes (a deleted name is never reused with other bytes),
# so its URL is immutable; private because it sits behind auth.
FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"


def basic_or_session(view: Callable[..., Response]) -> Callable[..., Response]:
    """Basic auth (login_required); without an Authorization header, a valid web session
    is accepted instead. Credentials, when sent, always decide: clients see no change."""
    basic = login_required(view)

    @wraps(view)
    def wrapper(*args: str, **kwargs: str) -> Response:
        if "Authorization" not in request.headers:
            principal = session_reader()
            if principal is not None:
                g.session_reader = principal
                return view(*args, **kwargs)
        return basic(*args, **kwargs)

    return wrapper


def _readable(project: str, filename: str) -> tuple[FileRecord, Path, str, str, Principal]:
    """(row, path on disk, etag, mimetype, reader) of a file the caller may read, or raise
    the answer: 404 for a missing file or one of a project the caller may not see."""
    svc = services()
    wants_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX) if wants_metadata else filename
    record = svc.db.get_file(dist_name)
    missing = HTTPError(404, f"No file named {filename!r} in project {project!r}.")
    if record is None or record.project != project:
        raise missing
    try:
        _found, reader = authorize(Action.READ, record.project, g.get("session_reader"))
    except HTTPError as refused:
        # A file of a project the caller may not see is missing, in the same words.
        raise missing if refused.status == 404 else refused from None
    if wants_metadata:
        if record.metadata_sha256 is None:
            raise HTTPError(404, f"No core metadata file for {dist_name!r}.")
        path = svc.storage.metadata_path(record.project, record.filename)
        return record, path, record.metadata_sha256, "text/plain", reader
    path = svc.storage.file_path(record.project, record.filename)
    return record, path, record.sha256, "application/octet-stream", reader


def _upload_time(record: FileRecord) -> datetime:
    return datetime.fromisoformat(record.upload_time.replace("Z", "+00:00"))


@bp.get("/files/<project>/<filename>")
@basic_or_session
def download(project: str, filename: str) -> Response:
    svc = services()
    wants_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX) if wants_metadata else filename
    if svc.upstream is not None and not _hosted(project, dist_name):
        # An upstream project's file (proxy.py), with the headers of a hosted one; nginx's
        # check answers 403 for these, so they always come here.
        return _proxied(project, filename) or _refuse(
            HTTPError(404, f"No file named {filename!r} in project {project!r}.")
        )
    record, path, etag, mimetype, reader = _readable(project, filename)
    try:
        if not svc.storage.local and svc.settings.s3_downloads == "redirect":
            response = objectfiles.redirect_to_store(path)
        elif not svc.storage.local:
            response = objectfiles.stream_from_store(
                path, mimetype=mimetype, etag=etag, last_modified=_upload_time(record)
            )
        else:
            response = send_file(
                path,
                mimetype=mimetype,
                as_attachment=False,
                conditional=True,
                etag=etag,
                last_modified=_upload_time(record),
                max_age=None,
            )
    except FileNotFoundError:
        # The row exists but the file does not (lost, or quarantined as damaged by `check
        # --repair`): say so plainly instead of a 500, never serve anything else under the
        # name, and say what heals it. 404, not 503: installers retry a 503 for nothing.
        raise HTTPError(
            404,
            f"File {filename!r} is missing from storage; uploading "
            f"{dist_name!r} again (the same file) restores it.",
        ) from None
    if response.status_code != 302:
        response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    # Uploaded bytes are never a page or a script: a browser must not sniff them into one.
    response.headers["X-Content-Type-Options"] = "nosniff"
    if not wants_metadata and request.method == "GET" and response.status_code in (200, 302):
        _count_download(record, reader)
    if svc.settings.accel_redirect and response.status_code in (200, 206):
        return front_sends(response, svc.settings.accel_redirect, path)
    return response


def _refuse(error: HTTPError) -> Response:
    raise error


def _hosted(project: str, dist_name: str) -> bool:
    record = services().db.get_file(dist_name)
    return record is not None and record.project == project


def _proxied(project: str, filename: str) -> Response | None:
    """A file of an upstream project (proxy.py), with the headers of a hosted one (named
    by its filename, not by the sha256 it is cached under), counted as a hosted one is."""
    found = proxy.locate(project, filename)
    if found is None:
        return None
    if isinstance(found, Response):
        response = found  # streamed while fetched
    else:
        response = send_file(
            found.path,
            mimetype=found.mimetype,
            as_attachment=False,
            download_name=filename,
            conditional=True,
            etag=found.etag,
            last_modified=found.last_modified,
            max_age=None,
        )
        response.headers["Cache-Control"] = FILE_CACHE_CONTROL
        response.headers["X-Content-Type-Options"] = "nosniff"
    served = request.method == "GET" and response.status_code == 200
    if served and not filename.endswith(METADATA_SUFFIX):
        services().audit.served(project, filename, proxy.reader(), client_ip())
    return response


def _count_download(record: FileRecord, reader: Principal) -> None:
    services().audit.served(record.project, record.filename, reader, client_ip())


def front_sends(sent: Response, prefix: str, path: Path) -> Response:
    """Flask's answer with the body left to the front server: every header but the length
    and range (nginx computes those for the Range it is asked), no body, and
    `X-Accel-Redirect: PREFIX<project>/<file>` (nginx maps PREFIX to packages/; Caddy
    reads the same name, unescaped, from X-Teamindex-File)."""
    sent.close()  # send_file opened the file; nginx opens it again
    answer = Response(status=200)
    answer.headers.clear()
    for key, value in sent.headers.items():
        if key.lower() not in {"content-length", "content-range"}:
            answer.headers[key] = value
    for key, value in front_headers(prefix, path):
        answer.headers[key] = value
    if sent.status_code == 206:  # nginx omits Accept-Ranges on its 206; this adds it back
        answer.headers[RANGES_HEADER] = "bytes"
    return answer


def front_headers(prefix: str, path: Path) -> list[tuple[str, str]]:
    """The headers naming the file under packages/ for the front server (the hot path
    sends them too, api/hotfiles.py)."""
    name = f"{path.parent.name}/{path.name}"
    return [
        ("X-Accel-Redirect", prefix + quote(name)),
        # Unescaped, for Caddy: its rewrite escapes the placeholder, so %2B would stay literal.
        (FILE_HEADER, name),
    ]


# Names nginx may take literally from the header: every wheel and sdist name uses these.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!~-]*")


def _ask_teamindex() -> Response:
    """Any answer but 204 sends nginx to /files/ here, which gives the real one (401 with
    its challenge, 404, 429, a 304...). Never cached by the front (only 204 is)."""
    return Response(status=403)


@bp.get(FRONT_CHECK_PREFIX + "/files/<project>/<filename>")
def front_check(project: str, filename: str) -> Response:
    """nginx's auth_request subrequest for GET /files/<project>/<filename>: 204 when these
    Basic credentials, from this address, may read this file and it is on disk; the
    answer names the file under packages/ and carries its ETag and Last-Modified, for nginx
    to send it with the headers /files/ would (the type from its `types`). nginx keeps a 204
    for a few seconds per Authorization header, address and URI (README, behind TLS):
    so the decision may not rest on anything else, such as a web session."""
    svc = services()
    if not svc.settings.accel_redirect or "Authorization" not in request.headers:
        return _ask_teamindex()
    try:
        answer = _checked(project, filename)
    except HTTPError:
        return _ask_teamindex()
    return answer if answer.status_code == 204 else _ask_teamindex()


@login_required
def _checked(project: str, filename: str) -> Response:
    record, path, etag, _mimetype, reader = _readable(project, filename)
    if not path.is_file() or not PLAIN_NAME.fullmatch(path.name):
        # Missing from storage (/files/ says so in full), or a name nginx's try_files would
        # need escaped (it takes the header literally): /files/ answers those.
        raise HTTPError(404, "not for the front")
    answer = Response(status=204)
    answer.headers.clear()
    answer.headers[FILE_HEADER] = f"{path.parent.name}/{path.name}"
    answer.headers["ETag"] = f'"{etag}"'
    answer.headers["Last-Modified"] = http_date(_upload_time(record))
    if not filename.endswith(METADATA_SUFFIX):  # counted once per window the front keeps
        _count_download(record, reader)
    return answer
