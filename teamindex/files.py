"""File downloads: /files/<project>/<filename> and its PEP 658 `.metadata` twin.

The path on disk comes from the database row, never from the URL; the URL only selects the
row. Files stream from disk through waitress' file wrapper with Content-Length, a strong
ETag (the sha256), Last-Modified, conditional GET and single Range requests (uv and poetry
read wheel metadata by range when no .metadata is advertised).
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, request, send_file

from .context import services
from .errors import HTTPError
from .httpauth import authorize, login_required
from .permissions import Action
from .storage import METADATA_SUFFIX

bp = Blueprint("files", __name__)

# A filename never changes its bytes (a deleted name is never reused with other bytes),
# so its URL is immutable; private because it sits behind auth.
FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"


@bp.get("/files/<project>/<filename>")
@login_required
def download(project: str, filename: str) -> Response:
    svc = services()
    wants_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX) if wants_metadata else filename
    record = svc.db.get_file(dist_name)
    if record is None or record.project != project:
        raise HTTPError(404, f"No file named {filename!r} in project {project!r}.")
    authorize(Action.READ, record.project)
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
        # The row exists but the file does not: damage `teamindex check` reports. Say so
        # plainly instead of a 500, and never serve anything else under the name.
        raise HTTPError(404, f"File {filename!r} is missing from storage.") from None
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    if not wants_metadata and request.method == "GET" and response.status_code == 200:
        svc.audit.download(record.project, record.filename)
    return response
