"""File downloads: /files/<project>/<filename> and its PEP 658 `.metadata` twin.

The path on disk comes from the database row, never from the URL; the URL only selects the
row. Files stream from disk through waitress' file wrapper with Content-Length, a strong
ETag (the sha256), Last-Modified, conditional GET and single Range requests (uv and poetry
read wheel metadata by range when no .metadata is advertised).

Who may download: Basic auth, exactly as for pip, uv and poetry (401 with a challenge when
no credentials come). A request without an Authorization header may instead carry the web
session, so the links on the project pages work in a logged-in browser; the same READ rule
applies, and no cookie is ever set here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps

from flask import Blueprint, Response, g, request, send_file

from ..access.httpauth import authorize, client_ip, login_required
from ..access.permissions import Action
from ..context import services
from ..errors import HTTPError
from ..index.storage import METADATA_SUFFIX
from ..web.session import session_reader
from . import proxy

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


@bp.get("/files/<project>/<filename>")
@basic_or_session
def download(project: str, filename: str) -> Response:
    svc = services()
    wants_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX) if wants_metadata else filename
    record = svc.db.get_file(dist_name)
    missing = HTTPError(404, f"No file named {filename!r} in project {project!r}.")
    if (record is None or record.project != project) and svc.upstream is not None:
        return _proxied(project, filename) or _refuse(missing)
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
        etag, mimetype = record.metadata_sha256, "text/plain"
    else:
        path = svc.storage.file_path(record.project, record.filename)
        etag, mimetype = record.sha256, "application/octet-stream"
    try:
        response = send_file(
            path,
            mimetype=mimetype,
            as_attachment=False,
            conditional=True,
            etag=etag,
            last_modified=datetime.fromisoformat(record.upload_time.replace("Z", "+00:00")),
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
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    # Uploaded bytes are never a page or a script: a browser must not sniff them into one.
    response.headers["X-Content-Type-Options"] = "nosniff"
    if not wants_metadata and request.method == "GET" and response.status_code == 200:
        if svc.audit.record_downloads:  # serve --audit-downloads: who, with what, from where
            svc.audit.download(
                record.project,
                record.filename,
                user=reader.name,
                token_id=reader.token.id if reader.token else None,
                ip=client_ip(),
            )
        else:
            svc.audit.download(record.project, record.filename)
    return response


def _refuse(error: HTTPError) -> Response:
    raise error


def _proxied(project: str, filename: str) -> Response | None:
    """A file of an upstream project (proxy.py), with the headers of a hosted one."""
    found = proxy.locate(project, filename)
    if found is None or isinstance(found, Response):
        return found
    response = send_file(
        found.path,
        mimetype=found.mimetype,
        as_attachment=False,
        conditional=True,
        etag=found.etag,
        last_modified=found.last_modified,
        max_age=None,
    )
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
