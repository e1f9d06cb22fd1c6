"""The legacy upload API (`:action=file_upload`) that twine, poetry, uv, pdm and hatch speak.

Served at /legacy/, /legacy (no redirect: twine and poetry refuse to follow one on upload)
and / . The file part is streamed by Werkzeug straight into a hashing temp file in the data
dir (see IndexRequest), so a 1 GiB wheel costs no memory and is hashed in the same pass.
"""

from __future__ import annotations

import errno
from typing import IO

from flask import Blueprint, Request, Response, g, redirect, request, url_for
from werkzeug.datastructures import FileStorage

from ..access.httpauth import (
    audit_denied,
    authorize,
    client_ip,
    current_principal,
    login_required,
    refuse_cross_site,
)
from ..access.permissions import Action, Principal, may_ever, scope_refusal
from ..context import services
from ..errors import HTTPError
from ..index.dists import DistributionError, FilenameInfo, parse_filename
from ..index.ingest import DIGEST_NAMES, Claims, IngestError, Outcome, ingest, validate
from ..index.storage import Digests, HashingTempFile
from ..upstream import Origin
from ..upstream.pages import PageUnavailable

bp = Blueprint("upload", __name__)


CHALLENGE = {"WWW-Authenticate": 'Basic realm="teamindex"'}

GONE_ACTIONS = {
    "submit": "Project pre-registration is no longer required or supported, upload your "
    "files instead.",
    "submit_pkg_info": "Project pre-registration is no longer required or supported, upload "
    "your files instead.",
    "doc_upload": "Uploading documentation is not supported by the legacy API.",
}


@bp.before_request
def _same_origin_posts() -> None:
    if request.method == "POST":
        refuse_cross_site()


# Uploads and docs use one file part, `content`; more would only fill the disk (issue 10:
# 9,000 file parts wrote ~860 MB of temp files before any check).
MAX_FILE_PARTS = 1


class IndexRequest(Request):
    """Streams multipart file parts into hashing temp files inside the data dir."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        temps = g.setdefault("upload_temps", [])
        if len(temps) >= MAX_FILE_PARTS:
            raise HTTPError(400, "Too many file parts: send one file, as the field 'content'.")
        temp = services().storage.new_temp()
        temps.append(temp)
        return temp  # type: ignore[return-value]  # a file-like object, as werkzeug needs


def discard_upload_temps(_exc: BaseException | None = None) -> None:
    """Teardown: remove temp files of parts that were not moved into the index."""
    for temp in g.pop("upload_temps", []):
        temp.discard()


def _field(name: str) -> str | None:
    """A form value, with "" and distutils' "UNKNOWN" treated as absent (pdm sends "")."""
    value = request.form.get(name)
    if value is None or value.strip() in {"", "UNKNOWN"}:
        return None
    return value.strip()


def content_part() -> FileStorage | None:
    """The multipart field `content` (uploads and docs zips); a full disk while werkzeug
    streams it to tmp/ is a 507."""
    try:
        return request.files.get("content")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPError(507, "Insufficient storage: the index's disk is full.") from exc
        raise


@bp.post("/legacy/", strict_slashes=False)
@bp.post("/")
@login_required
def file_upload() -> Response:
    principal = current_principal()
    if principal.user is None:  # anonymous readers may not write
        raise HTTPError(401, "Uploading needs credentials.", CHALLENGE)
    if not may_ever(principal, Action.UPLOAD):  # from the headers, before the body is parsed
        assert principal.token is not None  # a user without a token may always try
        raise HTTPError(403, scope_refusal(principal.token, Action.UPLOAD, principal.name))
    content = content_part()
    action = request.form.get(":action") or request.args.get(":action")
    if action in GONE_ACTIONS:
        raise HTTPError(410, GONE_ACTIONS[action])
    if action != "file_upload":
        raise HTTPError(400, f"Unknown or missing :action {action!r}; expected 'file_upload'.")
    if request.form.get("protocol_version", "1") != "1":
        raise HTTPError(400, "Unknown protocol version.")
    if content is None or not content.filename:
        raise HTTPError(400, "Upload payload does not have a file.")
    temp = content.stream
    if not isinstance(temp, HashingTempFile):  # cannot happen with IndexRequest; be explicit
        raise HTTPError(400, "Upload payload does not have a file.")
    claims = Claims(
        name=_field("name"),
        version=_field("version"),
        filetype=_field("filetype"),
        digests=tuple(
            (name, value)
            for name in DIGEST_NAMES
            if (value := _field(f"{name}_digest")) is not None
        ),
    )
    if not claims.digests:
        raise HTTPError(400, "Error: Include at least one message digest.")
    try:
        info = parse_filename(content.filename)
    except DistributionError as exc:
        raise HTTPError(400, str(exc)) from None
    svc = services()
    digests = temp.digests()
    if digests.size > svc.settings.max_upload_size:
        raise HTTPError(413, f"File too large. Limit is {svc.settings.max_upload_size} bytes.")
    try:
        _project, principal = authorize(Action.UPLOAD, info.project, audit_as="upload")
    except HTTPError as refused:
        if refused.status == 404:
            _refuse_as_for_a_free_name(temp, digests, info, claims)
        raise
    assert principal.user is not None
    if _project is None and svc.upstream is not None:
        _require_unclaimed_upstream(info.project, principal)
    try:
        temp.finish()  # fsync: a full disk may only show now
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPError(507, "Insufficient storage: the index's disk is full.") from exc
        raise
    temp.close()
    audit = {
        "ip": client_ip(),
        "user": principal.name,
        "token_id": principal.token.id if principal.token else None,
        "project": info.project,
        "filename": info.filename,
    }
    try:
        outcome = ingest(
            svc.db,
            svc.storage,
            temp.path,
            digests,
            info,
            uploader_id=principal.user.id,
            claims=claims,
        )
    except IngestError as exc:
        # A refusal's answer must not turn into a 503 because its audit row cannot wait.
        svc.audit.record(
            "upload", outcome="rejected", detail=exc.message, best_effort=True, **audit
        )
        raise HTTPError(exc.status, exc.message) from None
    svc.audit.record("upload", outcome=outcome.value, **audit)
    message = {
        Outcome.STORED: "",
        Outcome.UNCHANGED: f"{info.filename} already exists with the same content.",
        Outcome.RESTORED: f"{info.filename} was missing from storage; restored from this upload.",
    }[outcome]
    return Response(message, mimetype="text/plain")


def _require_unclaimed_upstream(name: str, principal: Principal) -> None:
    """Origin control (issue 13): the first upload of a name upstream already has is
    refused, so a typo or a careless upload never replaces a public package for the whole
    team; an admin claims the name first with `project create`. A protected or denied name
    is private by definition and never sent upstream to ask. Fails closed: when upstream
    cannot say, the upload waits (503) rather than shadow a public name unseen."""
    upstream = services().upstream
    assert upstream is not None
    if upstream.origin(name, local=False) is Origin.LOCAL:
        return
    try:
        exists = not upstream.pages.get(name).missing
    except PageUnavailable as exc:
        raise HTTPError(
            503,
            f"Cannot check whether {name!r} exists upstream ({exc.message}); retry, or "
            f"have an admin claim it with `teamindex project create {name}`.",
        ) from None
    if exists:
        audit_denied("upload", name, principal, "name exists upstream and is not claimed here")
        raise HTTPError(
            403,
            f"{name!r} exists upstream; to publish it here an admin must claim the name "
            f"first: teamindex project create {name}",
        )


def _refuse_as_for_a_free_name(
    temp: HashingTempFile, digests: Digests, info: FilenameInfo, claims: Claims
) -> None:
    """A name the uploader may not see (404) is answered as a free name would be up to the
    point where a free name would be created: a broken file gets the same 400 (checking
    permission first told outsiders which names exist). Only a valid file to a hidden name
    still differs from a free one — the index cannot both create the name and hide it."""
    temp.flush()
    try:
        validate(temp.path, digests, info, claims)
    except IngestError as exc:
        raise HTTPError(exc.status, exc.message) from None


@bp.get("/legacy/", strict_slashes=False)
@login_required
def upload_form_get() -> Response:
    """uv maps a 405 here to "that's most likely the simple index URL" (PROTOCOL.md 6.11)."""
    raise HTTPError(405, "This is the upload URL; POST distributions here. Install from /simple/.")


@bp.post("/simple/", strict_slashes=False)
@bp.post("/simple/<path:_rest>")
def post_to_install_url(_rest: str = "") -> Response:
    """The most common publishing mistake: the install URL given as the upload URL (poetry
    does it by itself for `publish -r team` when `team` is a source, PROTOCOL.md 7.2). 405
    with the message as reason phrase and body: twine prints the reason, poetry, pdm and
    hatch the reason and body, and uv adds its own "likely the simple index URL" (6.10)."""
    upload_url = request.url_root + "legacy/"  # url_for would pick the "/" alias
    raise HTTPError(405, f"This is the install URL; upload to {upload_url}", {"Allow": "GET, HEAD"})


@bp.get("/legacy/<project>/", strict_slashes=False)
@bp.get("/legacy/<project>/<version>/", strict_slashes=False)
def published_release(project: str, version: str = "") -> Response:
    """hatch prints `<repository>/<project>/<version>/` after publishing (PROTOCOL.md 7.5):
    send whoever follows it to the project page, which applies the read rules itself (so
    this redirect says nothing about which projects exist)."""
    return redirect(url_for("web.pages.project", name=project), code=302)
