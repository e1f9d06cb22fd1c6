"""The simple repository API: /simple/ and /simple/<project>/ (PEP 503, 629, 691, 700).

Each page is one dict rendered as HTML or JSON by `Accept`, cached per serial, sent with a
strong ETag so revalidation is a 304 without rendering, and gzipped when the client asks.
Repeats from a known login are answered earlier, by hotpath.HotReads, from the caches these
views fill; these views are the reference it is tested against.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, request, url_for

from ..access.httpauth import authorize, current_principal, login_required, project_in_url
from ..access.permissions import Action
from ..context import services
from ..errors import HTTPError
from . import proxy, render
from .pagecache import CachedPage, page_reply
from .simplepages import project_page, root_page, serializer

bp = Blueprint("simple", __name__)


def negotiate() -> str:
    """Pick the content type per PEP 691: ?format= wins, no Accept means HTML, else the best
    q-value among our offers (ties go to HTML, as on PyPI); nothing acceptable is a 406."""
    wanted = request.args.get("format")
    if wanted:
        wanted = render.LATEST_ALIASES.get(wanted, wanted)
        if wanted not in render.OFFERS:
            raise HTTPError(406, f"Unsupported format {wanted!r}; use one of {render.OFFERS}.")
        return wanted
    best = render.best_content_type(request.headers.get("Accept", ""))
    if best is None:
        raise HTTPError(
            406, "No acceptable content type; this index serves " + ", ".join(render.OFFERS)
        )
    return best


def page_response(page: CachedPage, content_type: str) -> Response:
    """A cached page as a response: 304 on a matching If-None-Match, gzip when accepted."""
    reply = page_reply(
        page,
        render.mimetype(content_type),
        request.headers.get("Accept-Encoding", ""),
        request.headers.get("If-None-Match"),
    )
    return Response(reply.body, status=reply.status, headers=reply.headers)


@bp.get("/simple/")
@login_required
def index() -> Response:
    svc = services()
    content_type = negotiate()
    page = root_page(svc, current_principal(), content_type, svc.db.serial())
    return page_response(page, content_type)


@bp.get("/simple/<name>/")
@login_required
def project(name: str) -> Response:
    return _project_page(name, "simple.project")


@bp.get("/legacy/+simple/<name>/")
@login_required
def devpi_style_project(name: str) -> Response:
    """hatch assumes every non-PyPI index is devpi and probes <upload-url>/+simple/<name>/
    to skip files that exist (PROTOCOL.md 7.5); answer it with the same page."""
    return _project_page(name, "simple.devpi_style_project")


def _project_page(name: str, endpoint: str) -> Response:
    normalized = project_in_url(name)
    if normalized != name:
        # Keep the query string as sent: url_for leaves "+" unescaped, which would turn
        # ?format=...v1%2Bjson into "v1 json" (a 406) on the redirected request.
        query = request.query_string.decode("latin-1")
        location = url_for(endpoint, name=normalized) + (f"?{query}" if query else "")
        return redirect(location, code=301)
    svc = services()
    if svc.upstream is not None:
        content_type = negotiate()
        serialize = serializer(content_type, render.project_html)
        proxied = proxy.project_page(normalized, content_type, serialize)
        if proxied is not None:
            return page_response(proxied, content_type)
    found, _principal = authorize(Action.READ, normalized)
    assert found is not None
    content_type = negotiate()
    return page_response(project_page(svc, found, content_type), content_type)
