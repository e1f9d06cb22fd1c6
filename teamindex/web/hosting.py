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
project, version and expiry, signed with the app's key over a stamp of the user's password
hash, so it dies with the user and with a password change) carries the permission in the path
instead, so every relative link of the site keeps working; it expires within minutes and is
renewed as the user browses (an HTML page opened with an older one redirects to a fresh
one), is re-checked against the user's current rights on every request, never leaves through
a Referer (`Referrer-Policy: no-referrer`) and is left out of the request log.
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

from ..access.httpauth import (
    audit_denied,
    authorize,
    client_ip,
    login_required,
    project_in_url,
    refuse_cross_site,
    require_address_allowed,
    require_principal_address_allowed,
)
from ..access.permissions import ANONYMOUS, Action, Principal
from ..api.objectfiles import stream_response
from ..api.upload import content_part
from ..context import services
from ..errors import HTTPError
from ..index.docs import DocsError
from ..index.storage import HashingTempFile
from ..models import DocsBuild, Project, ReleaseInfo, User
from .session import password_stamp, resolve_viewer
from .state import web_state

bp = Blueprint("docs", __name__)

LATEST = "latest"
# A capability is valid 10 to 20 minutes: stable within a window, so the browser can cache
# the site's files; pages opened in a later window move to a fresh one (see serve()).
CAPABILITY_WINDOW = 600
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


@bp.before_request
def _same_origin_posts() -> None:
    if request.method == "POST":  # the docs upload: Basic auth, no CSRF token
        refuse_cross_site()


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
    audit_denied("docs_upload", name, principal, "no such project")


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
        part = content_part()
        if part is None or not isinstance(part.stream, HashingTempFile):
            raise HTTPError(400, "Send the zip as the multipart field 'content' or as the body.")
        temp = part.stream
        if temp.size > MAX_DOCS_ZIP:
            raise HTTPError(413, f"Documentation zip too large. Limit is {MAX_DOCS_ZIP} bytes.")
        temp.finish()
        return temp
    temp = services().storage.new_temp()
    try:
        while chunk := request.stream.read(CHUNK):
            temp.write(chunk)
            if temp.size > MAX_DOCS_ZIP:
                raise HTTPError(413, f"Documentation zip too large. Limit is {MAX_DOCS_ZIP} bytes.")
        if temp.size == 0:
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
    return redirect(_capability_url(principal, name, build.canonical_version, subpath), code=302)


def _capability_url(principal: Principal, project: str, version: str, subpath: str) -> str:
    cap = capability(principal.user, project, version)
    return url_for("docs.serve", cap=cap, project=project, version=version, subpath=subpath)


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
    found_cap = _principal_of(cap, project, version)
    if found_cap is None:  # expired or forged: start over at the checked entry point
        return redirect(url_for("docs.entry", project=project, version=version, subpath=subpath))
    principal, expires = found_cap
    found, _principal = authorize(Action.READ, project, principal)
    assert found is not None
    build = _build(found, version)
    docs = web_state().docs
    path = docs.locate(build, subpath)
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
    if path.suffix in {".html", ".htm"} and expires - time.time() < CAPABILITY_WINDOW:
        # A page opened with a capability from an earlier window: the same page under a
        # fresh one, so its links and files stay valid while the user keeps reading.
        fresh = _capability_url(principal, project, version, subpath)
        return redirect(
            fresh + (f"?{request.query_string.decode()}" if request.query_string else "")
        )
    mimetype = EXTRA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    if docs.local:
        response = send_file(
            path, mimetype=mimetype or "application/octet-stream", conditional=True, max_age=None
        )
    else:
        # A build never changes (a new upload is a new build): its name and the path are
        # a strong validator.
        etag = hashlib.sha256(f"{build.build}/{path}".encode()).hexdigest()[:32]
        response = stream_response(
            docs.open(path),
            path.name,
            mimetype=mimetype or "application/octet-stream",
            etag=etag,
            last_modified=None,
        )
    response.headers.update(DOCS_HEADERS)
    return response


# -- capabilities ------------------------------------------------------------------------------


def _key() -> bytes:
    secret = current_app.secret_key
    assert isinstance(secret, bytes)
    return hmac.new(secret, b"teamindex docs capability", hashlib.sha256).digest()


def _signature(user: User | None, project: str, version: str, expires: int) -> str:
    # Over the user's password stamp too: the capability dies with the user (an id alone
    # could name someone else one day) and with a password change.
    user_id, stamp = (user.id, password_stamp(user)) if user else (0, "")
    message = f"{user_id}\0{stamp}\0{project}\0{version}\0{expires}".encode()
    digest = hmac.new(_key(), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def capability(user: User | None, project: str, version: str, now: float | None = None) -> str:
    """A path segment granting `user` (None: the anonymous reader) what they may read of
    one docs version, until the end of the next CAPABILITY_WINDOW."""
    window = int((time.time() if now is None else now) // CAPABILITY_WINDOW)
    expires = (window + 2) * CAPABILITY_WINDOW
    user_id = user.id if user else 0
    return f"{user_id}.{expires}.{_signature(user, project, version, expires)}"


def _principal_of(cap: str, project: str, version: str) -> tuple[Principal, int] | None:
    """Who a capability speaks for and until when, if it is genuine, unexpired and for this
    version; their current rights (and the IP allowlists) still apply."""
    user_id, _, rest = cap.partition(".")
    expires, _, signature = rest.partition(".")
    if not (user_id.isdigit() and expires.isdigit()) or int(expires) <= time.time():
        return None
    if int(expires) > time.time() + 2 * CAPABILITY_WINDOW:
        return None
    require_address_allowed()
    svc = services()
    user = svc.db.get_user_by_id(int(user_id)) if int(user_id) else None
    if int(user_id) and user is None:
        return None
    expected = _signature(user, project, version, int(expires))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    if user is None:
        return (ANONYMOUS, int(expires)) if svc.settings.anonymous_read else None
    principal = Principal(user)
    require_principal_address_allowed(principal)
    return principal, int(expires)
