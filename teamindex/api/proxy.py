"""The upstream proxy over HTTP: project pages and files of names that are not private.

simple.py and files.py ask here first when an upstream is configured; a name whose origin
is LOCAL (it exists here, is reserved, protected or denied) is answered by them exactly as
without an upstream, and its name is never sent upstream. Reading needs the same rights as
a local project: an upstream project is a team-visible project that exists, so anonymous
read, token scopes and token project lists apply unchanged (permissions.decide).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from flask import Response, g, request
from packaging.utils import canonicalize_name

from ..access.httpauth import current_principal
from ..access.permissions import Action, Decision, Principal, ProjectFacts, decide
from ..context import services
from ..errors import HTTPError
from ..index.storage import METADATA_SUFFIX
from ..models import Project
from ..upstream import Origin, Upstream, UpstreamFile, UpstreamPage, Visibility
from ..upstream.client import UpstreamFailed
from ..upstream.files import Relay
from ..upstream.pages import PageUnavailable, entry_dict
from ..upstream.rules import Rules
from . import render
from .pagecache import CachedPage, PageCache

FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"


@dataclass(frozen=True)
class Target:
    """A name the proxy answers for: its local row (MIXED) and upstream's page."""

    name: str
    project: Project | None
    origin: Origin
    page: UpstreamPage
    rules: Rules


def _target(name: str, principal: Principal) -> Target | None:
    """None when the name is not the proxy's to answer (LOCAL, or the caller may not read
    it: the local path then gives its usual refusal). Raises for an upstream failure."""
    if canonicalize_name(name) != name:
        # Only normalized names are the proxy's: rules, protected patterns and local rows
        # are all normalized, so another spelling (a hand-made /files/Acme-Utils/... URL)
        # would match none of them and be sent upstream, which normalizes it.
        return None
    svc = services()
    upstream = svc.upstream
    assert upstream is not None
    user = principal.user
    project, role = svc.db.project_with_role(name, user.id if user else None)
    rules = upstream.rules.current()
    where = upstream.origin(name, project is not None, rules)
    if where is Origin.LOCAL:
        return None
    # Decided before anything is sent upstream: a token that does not cover the name learns
    # nothing, and upstream never hears of it.
    if not may_read(principal, name, project, role):
        return None
    page = _page(upstream, name)
    if page.missing and project is None:
        return None
    return Target(name, project, where, page, rules)


def may_read(principal: Principal, name: str, project: Project | None, role: str | None) -> bool:
    """READ on a proxied name: a local row's facts, else a team-visible project that exists."""
    facts = ProjectFacts.of(name, project, role) if project else ProjectFacts(name, exists=True)
    return decide(principal, Action.READ, facts) is Decision.ALLOW


def _page(upstream: Upstream, name: str) -> UpstreamPage:
    try:
        return upstream.pages.get(name)
    except PageUnavailable as exc:
        raise HTTPError(exc.status, f"Upstream unavailable: {exc.message}.") from None


# -- rendered pages ---------------------------------------------------------------------------
# A proxied page is kept in the same PageCache as local pages, under its own key and tagged
# with everything its bytes depend on: upstream's copy (its body digest), the local project's
# serial (MIXED), the rules' serial, and the cooldown's shown mark. A warm request, here or
# in the hot path, compares the tag and renders nothing.


def page_key(name: str, content_type: str) -> tuple[str, ...]:
    return ("upstream", name, content_type)


def page_tag(
    upstream: Upstream, page: UpstreamPage, project: Project | None, rules: Rules, now: datetime
) -> tuple[str, int, int, int]:
    return (
        page.version,
        project.serial if project else -1,
        rules.serial,
        upstream.shown_mark(page, rules, now),
    )


def warm_page(
    upstream: Upstream,
    pages: PageCache,
    name: str,
    project: Project | None,
    rules: Rules,
    content_type: str,
) -> CachedPage | None:
    """The rendered page if one is cached for upstream's current copy (the hot path):
    None when upstream's copy is stale, not in memory, or the tag moved."""
    page = upstream.pages.peek(name)
    if page is None or (page.missing and project is None):
        return None
    tag = page_tag(upstream, page, project, rules, datetime.now(timezone.utc))
    return pages.get(page_key(name, content_type), tag)


def project_page(
    name: str, content_type: str, serialize: Callable[[dict], bytes]
) -> CachedPage | None:
    """A proxied project page, rendered once per tag, or None (not the proxy's to answer)."""
    svc = services()
    upstream = svc.upstream
    assert upstream is not None
    target = _target(name, current_principal())
    if target is None:
        return None
    now = datetime.now(timezone.utc)
    tag = page_tag(upstream, target.page, target.project, target.rules, now)
    return svc.pages.get_or_build(
        page_key(name, content_type), tag, lambda: serialize(_project_dict(target, now))
    )


def _project_dict(target: Target, now: datetime) -> dict:
    """The PEP 691 dict of a proxied project page."""
    svc = services()
    upstream = svc.upstream
    assert upstream is not None
    name = target.name
    local = svc.db.project_files(target.project) if target.project else []
    taken = {record.filename for record in local}
    entries = [
        (found.version, entry_dict(found, f"../../files/{name}/{quote(found.filename)}"))
        for found in upstream.visible(target.page, target.rules, now)
        if found.filename not in taken  # a local file always wins its filename
    ]
    display = target.project.display_name if target.project else name
    return render.project_page(display, local, upstream=entries, status=target.page.status)


@dataclass(frozen=True)
class Stored:
    """A proxied file on local disk, served like a hosted one."""

    path: object  # pathlib.Path
    etag: str
    mimetype: str
    last_modified: datetime | None


def locate(project: str, filename: str) -> Stored | Response | None:
    """A proxied file: on disk (Stored), streamed while fetched (Response), or None when
    the name is not the proxy's (the caller answers 404 in its usual words)."""
    upstream = services().upstream
    assert upstream is not None
    wants_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX) if wants_metadata else filename
    target = _target(project, reader())
    if target is None or target.page.missing:
        return None
    found = target.page.file(dist_name)
    if found is None:
        return None
    shown = upstream.visibility(project, found, target.rules)
    if shown is not Visibility.SHOWN:
        raise HTTPError(
            404, f"{dist_name} is held back by this index's upstream policy ({shown.value})."
        )
    try:
        if wants_metadata:
            if found.metadata_sha256 is None:
                raise HTTPError(404, f"No core metadata file for {dist_name!r}.")
            path = upstream.files.metadata(found)
            return Stored(path, found.metadata_sha256, "text/plain", found.upload_time)
        path = upstream.files.cached(found.sha256)
        if path is not None:
            upstream.stats.add("file", "hit")
        elif _streamable(found):
            relay = upstream.files.stream(found)
            if isinstance(relay, Relay):
                return _streamed(relay, found)
            path = relay
        if path is None:
            path = upstream.files.fetch(found)
    except UpstreamFailed as exc:
        raise HTTPError(exc.status, f"Upstream file unavailable: {exc.message}.") from None
    return Stored(path, found.sha256, "application/octet-stream", found.upload_time)


def reader() -> Principal:
    """Who reads a file: the web session's user (files.basic_or_session), else Basic auth."""
    principal: Principal = g.get("session_reader") or current_principal()
    return principal


def _streamable(found: UpstreamFile) -> bool:
    """Only a plain GET of a file of known size is relayed while fetched; HEAD and Range
    requests (uv, poetry) wait for the verified copy, which send_file then answers."""
    return request.method == "GET" and "Range" not in request.headers and found.size is not None


def _streamed(relay: Relay, found: UpstreamFile) -> Response:
    response = Response(relay, mimetype="application/octet-stream", direct_passthrough=True)
    response.headers["Content-Length"] = str(found.size)
    response.headers["ETag"] = f'"{found.sha256}"'
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    # send_file's header for the stored copy (download_name=): the same name in a browser.
    response.headers.set("Content-Disposition", "inline", **_file_names(found.filename))
    if found.upload_time is not None:
        response.last_modified = found.upload_time
    return response


def _file_names(filename: str) -> dict[str, str]:
    """Content-Disposition's filename parameters as werkzeug's send_file writes them."""
    if filename.isascii():
        return {"filename": filename}
    simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    return {"filename": simple, "filename*": "UTF-8''" + quote(filename, safe="!#$&+^`|~")}


@dataclass(frozen=True)
class WebListing:
    """What the web project page shows of upstream for one name (issue 13): its origin, and
    upstream's files the viewer may see now (cooldown applied, local filenames win)."""

    origin: Origin
    files: list[UpstreamFile]
    held_back: int  # files upstream lists that the cooldown hides
    status: dict[str, str] | None
    unavailable: str = ""  # why upstream's files could not be listed (MIXED pages only)


def web_listing(name: str, principal: Principal, local: list[str]) -> WebListing | None:
    """The upstream part of the web page of `name`, or None when there is none: the name is
    LOCAL (never sent upstream), the viewer may not read it (decided before any request),
    or upstream has no such project. `local` are the filenames hosted here. An upstream
    failure is an HTTP error for an upstream-only page; a mixed page keeps its local files
    and says why upstream's are missing."""
    try:
        target = _target(name, principal)
    except HTTPError as exc:
        project = services().db.get_project(name)
        if project is None:
            raise
        return WebListing(Origin.MIXED, [], 0, None, exc.message)
    if target is None or target.page.missing:
        return None
    upstream = services().upstream
    assert upstream is not None
    shown = upstream.visible(target.page)
    taken = set(local)
    files = [found for found in shown if found.filename not in taken]
    held_back = len(target.page.files) - len(shown)
    return WebListing(target.origin, files, held_back, target.page.status)
