"""The `web` blueprint that every page blueprint hangs under, and what they share.

Order per web request: the global IP allowlist (403), the CSRF token on every POST (400),
then the viewer (session cookie, else Basic auth, else the anonymous reader if allowed;
otherwise a redirect to /login). Pages then ask `authorize()` with that viewer, so the web
follows exactly the API's permission rules: a restricted project is a 404 here too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from ..access.httpauth import require_address_allowed
from ..access.permissions import Principal
from ..context import services
from ..errors import HTTPError, reason_phrase
from .session import check_csrf, csrf_token, resolve_viewer, viewer

bp = Blueprint("web", __name__)

TOKENS_REFUSED = "Tokens cannot manage accounts or the index; log in with your password."
# Endpoints reachable without a viewer (they do their own checks).
PUBLIC_ENDPOINTS = frozenset({"web.auth.login", "web.auth.logout"})

# Pages are server-rendered: our own CSS and one small script, nothing inline. README images
# come from https URLs (badges) only with --readme-external-images; by default the browser
# loads no image from another host (a tracking pixel would tell it who reads what).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_CSP_EXTERNAL_IMAGES = PAGE_CSP.replace("img-src 'self' data:;", "img-src 'self' data: https:;")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show per-user data (and once, a token secret): never stored by caches or the
    # browser's back-forward cache after logging out.
    "Cache-Control": "no-store",
}


@bp.before_request
def _gate() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        require_address_allowed()
    if request.method == "POST":
        refuse_multipart()
        check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    principal = resolve_viewer()
    if principal is None:
        return redirect(url_for("web.auth.login", next=request.full_path.rstrip("?")))
    if request.method == "POST" and principal.token is not None:
        # Tokens are for tools: every web form changes an account or the index, and a
        # token must never exceed its scope (a read token of an admin is not an admin).
        raise HTTPError(403, TOKENS_REFUSED)
    return None


FORMS_ONLY = "Web forms send no files; upload with a tool to /legacy/ or /docs/."


def refuse_multipart() -> None:
    """415 for a multipart POST, before anything reads the form: no page form sends files
    (docs uploads go to /docs/, outside this blueprint), and parsing one for the CSRF check
    would write an outsider's file parts to temp files before the viewer is known."""
    if request.mimetype == "multipart/form-data":
        raise HTTPError(415, FORMS_ONLY)


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    csp = response.headers.get("Content-Security-Policy")
    if csp == PAGE_CSP and services().settings.readme_external_images:
        response.headers["Content-Security-Policy"] = PAGE_CSP_EXTERNAL_IMAGES
    return response


@bp.errorhandler(HTTPError)
def _error(error: HTTPError) -> Response:
    response = page("error.html", status=error.status, message=error.message)
    response.status = f"{error.status} {reason_phrase(error.message)}"
    response.headers.update(error.headers)
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "viewer": viewer()}


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    """1234567 -> '1.2 MB' (SI units, like PyPI)."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"  # not reached


@bp.app_template_filter("when")
def when(stamp: str | None) -> str:
    """An ISO UTC timestamp as '2026-11-25 10:42 UTC'."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def page(template: str, *, status: int = 200, **context: Any) -> Response:
    """Render a page template as an HTML response."""
    return Response(render_template(template, **context), status=status, mimetype="text/html")


def require_admin() -> Principal:
    """The viewer, if an administrator logged in with a password (403 otherwise): an
    admin's token carries a scope (read or upload) that never includes administration."""
    principal = viewer()
    if principal.token is not None:
        raise HTTPError(403, TOKENS_REFUSED)
    if not principal.is_admin:
        raise HTTPError(403, "Only administrators may open this page.")
    return principal


def require_user() -> Principal:
    """The viewer, if logged in as a user (not anonymous, not a token)."""
    principal = viewer()
    if principal.user is None:
        raise HTTPError(403, "Log in to open this page.")
    if principal.token is not None:
        raise HTTPError(403, TOKENS_REFUSED)
    return principal
