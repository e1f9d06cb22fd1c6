"""Private documentation: upload a built site as a zip per release, read it in the browser.

Upload (CI): `POST /docs/<project>/<version>/` with the zip as the body or as the multipart
field `content`, Basic auth with a password or an upload token; the same permission as
uploading a distribution (owner, maintainer, admin).

Reading: `/docs/<project>/<version>/<path>` and `/docs/<project>/latest/<path>` check the
viewer like every page, then redirect to the same file under a capability URL,
`/_docs/<cap>/<project>/<version>/<path>`, from which the site is served. Why: uploaded
HTML is served with `Content-Security-Policy: sandbox allow-scripts allow-popups`, which
gives it an opaque origin, so its scripts cannot read the index with the viewer's cookie.
The price is that the browser treats the site's own CSS, JS and image requests as cross-site
and withholds the SameSite=Lax session cookie (verified in Chromium). The capability (user,
project, version and expiry, signed with the app's key) carries the permission in the path
instead, so every relative link of the site keeps working; it expires within hours, is
re-checked against the user's current rights on every request, and never leaves through a
Referer (`Referrer-Policy: no-referrer`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
import time

from flask import Blueprint, Response, current_app, redirect, request, send_file, url_for
from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from ..context import services
from ..docs import DocsError
from ..errors import HTTPError
from ..httpauth import (
    authorize,
    client_ip,
    login_required,
    project_in_url,
    require_address_allowed,
    require_principal_address_allowed,
)
from ..models import DocsBuild, Project, ReleaseInfo
from ..permissions import ANONYMOUS, Action, Principal
from ..storage import HashingTempFile
from .session import resolve_viewer
from .state import web_state

bp = Blueprint("docs", __name__)

LATEST = "latest"
CAPABILITY_HOURS = 8  # valid 8 to 9 hours; stable within an hour, so the browser can cache
MAX_DOCS_ZIP = 256 << 20
CHUNK = 1 << 16
# Uploaded HTML must not act as the index: sandbox without allow-same-origin = opaque origin.
DOCS_CSP = "sandbox allow-scripts allow-popups; default-src 'self' 'unsafe-inline' data:"
DOCS_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The opaque-origin site needs CORS for fonts and fetch()ed files of its own; the
    # capability in the URL is the permission, so no cookie is involved.
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "private, no-cache",
}
EXTRA_TYPES = {".map": "application/json", ".inv": "application/octet-stream"}


# -- upload ------------------------------------------------------------------------------------


@bp.post("/docs/<project>/<version>/")
@login_required
def upload(project: str, version: str) -> Response:
    """Publish a docs zip for an existing release (CI: curl --data-binary @docs.zip)."""
    name = project_in_url(project)
    found, principal = authorize(Action.UPLOAD, name, audit_as="docs_upload")
    if found is None:
        _audit_missing(name, principal)
        raise HTTPError(404, f"No project named {name!r} in this index.")
    release = find_release(found, version)
    temp = _received_zip()
    svc = services()

    def record(outcome: str, detail: str) -> None:
        svc.audit.record(
            "docs_upload",
            ip=client_ip(),
            user=principal.name,
            token_id=principal.token.id if principal.token else None,
            project=name,
            outcome=outcome,
            detail=f"{release.version}: {detail}",
        )

    try:
        published = web_state().docs.publish(
            svc.db, release, temp.path, uploader_id=principal.user.id if principal.user else None
        )
    except DocsError as exc:
        record("rejected", str(exc))
        raise HTTPError(400, f"Invalid documentation zip: {exc}") from None
    finally:
        temp.discard()
    record("ok", f"{published.files} files, {published.size} bytes")
    where = url_for("docs.entry", project=name, version=release.version, _external=True)
    return Response(
        f"Published documentation for {name} {release.version} "
        f"({published.files} files): {where}\n",
        mimetype="text/plain",
    )


def _audit_missing(name: str, principal: Principal) -> None:
    """Docs for a name nobody uploaded: refused like a hidden one, and audited too."""
    services().audit.record(
        "docs_upload",
        ip=client_ip(),
        user=principal.name,
        token_id=principal.token.id if principal.token else None,
        project=name,
        outcome="denied",
        detail="no such project",
    )


def find_release(project: Project, version: str) -> ReleaseInfo:
    """The release a docs upload is for; docs belong to versions that are in the index."""
    try:
        wanted = canonicalize_version(Version(version))
    except InvalidVersion:
        raise HTTPError(400, f"Invalid version {version!r}.") from None
    for release in services().db.release_infos(None, project.id):
        if release.canonical_version == wanted:
            return release
    raise HTTPError(
        404, f"No release {version} of project {project.name!r}; upload its files first."
    )


def _received_zip() -> HashingTempFile:
    """The zip from the multipart field `content` or the raw body, in a temp file."""
    if request.mimetype == "multipart/form-data":
        part = request.files.get("content")
        if part is None or not isinstance(part.stream, HashingTempFile):
            raise HTTPError(400, "Send the zip as the multipart field 'content' or as the body.")
        temp = part.stream
        if temp.digests().size > MAX_DOCS_ZIP:
            raise HTTPError(413, f"Documentation zip too large. Limit is {MAX_DOCS_ZIP} bytes.")
        temp.finish()
        return temp
    temp = services().storage.new_temp()
    try:
        while chunk := request.stream.read(CHUNK):
            temp.write(chunk)
            if temp.digests().size > MAX_DOCS_ZIP:
                raise HTTPError(413, f"Documentation zip too large. Limit is {MAX_DOCS_ZIP} bytes.")
        if temp.digests().size == 0:
            raise HTTPError(400, "Empty body: send the zip as the body or the field 'content'.")
        temp.finish()
    except BaseException:
        temp.discard()
        raise
    return temp


# -- reading -----------------------------------------------------------------------------------


def latest_docs(project: Project) -> tuple[DocsBuild | None, list[DocsBuild]]:
    """(the build /latest/ serves, every build newest version first)."""
    builds = sorted(
        services().db.docs_builds(project.id),
        key=lambda build: Version(build.version),
        reverse=True,
    )
    return (builds[0] if builds else None), builds


@bp.get("/docs/<project>/<version>/", defaults={"subpath": ""})
@bp.get("/docs/<project>/<version>/<path:subpath>")
def entry(project: str, version: str, subpath: str) -> Response:
    """Check the viewer, then send them to the capability URL of the same file."""
    name = project_in_url(project)
    principal = resolve_viewer()
    if principal is None:
        return redirect(url_for("web.auth.login", next=request.full_path.rstrip("?")))
    found, _principal = authorize(Action.READ, name, principal)
    assert found is not None
    build = _build(found, version)
    user_id = principal.user.id if principal.user else 0
    cap = capability(user_id, name, build.canonical_version)
    target = url_for(
        "docs.serve", cap=cap, project=name, version=build.canonical_version, subpath=subpath
    )
    return redirect(target, code=302)


def _build(project: Project, version: str) -> DocsBuild:
    latest, builds = latest_docs(project)
    if version == LATEST:
        if latest is None:
            raise HTTPError(404, f"No documentation for {project.name!r} yet.")
        return latest
    try:
        wanted = canonicalize_version(Version(version))
    except InvalidVersion:
        raise HTTPError(404, f"No documentation for {project.name!r} {version}.") from None
    for build in builds:
        if build.canonical_version == wanted:
            return build
    raise HTTPError(404, f"No documentation for {project.name!r} {version}.")


@bp.get("/_docs/<cap>/<project>/<version>/", defaults={"subpath": ""})
@bp.get("/_docs/<cap>/<project>/<version>/<path:subpath>")
def serve(cap: str, project: str, version: str, subpath: str) -> Response:
    principal = _principal_of(cap, project, version)
    if principal is None:  # expired or forged: start over at the checked entry point
        return redirect(url_for("docs.entry", project=project, version=version, subpath=subpath))
    found, _principal = authorize(Action.READ, project, principal)
    assert found is not None
    build = _build(found, version)
    path = web_state().docs.locate(build, subpath)
    if path is None:
        raise HTTPError(404, f"No page {subpath!r} in the documentation of {project} {version}.")
    if (
        subpath
        and not subpath.endswith("/")
        and path.name == "index.html"
        and (not subpath.endswith("index.html"))
    ):
        # A directory: relative links inside its index.html need the trailing slash.
        return redirect(request.path + "/", code=301)
    mimetype = EXTRA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    response = send_file(
        path, mimetype=mimetype or "application/octet-stream", conditional=True, max_age=None
    )
    response.headers.update(DOCS_HEADERS)
    return response


# -- capabilities ------------------------------------------------------------------------------


def _key() -> bytes:
    secret = current_app.secret_key
    assert isinstance(secret, bytes)
    return hmac.new(secret, b"teamindex docs capability", hashlib.sha256).digest()


def _signature(user_id: int, project: str, version: str, expires: int) -> str:
    message = f"{user_id}\0{project}\0{version}\0{expires}".encode()
    digest = hmac.new(_key(), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def capability(user_id: int, project: str, version: str, now: float | None = None) -> str:
    """A path segment granting `user_id` (0: the anonymous reader) what they may read of
    one docs version, until the end of the hour CAPABILITY_HOURS from now."""
    hour = int((time.time() if now is None else now) // 3600)
    expires = (hour + CAPABILITY_HOURS + 1) * 3600
    return f"{user_id}.{expires}.{_signature(user_id, project, version, expires)}"


def _principal_of(cap: str, project: str, version: str) -> Principal | None:
    """Who a capability speaks for, if it is genuine, unexpired and for this version; their
    current rights (and the IP allowlists) still apply."""
    user_id, _, rest = cap.partition(".")
    expires, _, signature = rest.partition(".")
    if not (user_id.isdigit() and expires.isdigit()) or int(expires) <= time.time():
        return None
    expected = _signature(int(user_id), project, version, int(expires))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    require_address_allowed()
    svc = services()
    if int(user_id) == 0:
        return ANONYMOUS if svc.settings.anonymous_read else None
    user = svc.db.get_user_by_id(int(user_id))
    if user is None:
        return None
    principal = Principal(user)
    require_principal_address_allowed(principal)
    return principal
