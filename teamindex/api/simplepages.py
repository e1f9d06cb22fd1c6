"""The simple pages a reader gets, from the page cache or rendered now. No Flask.

The Flask views (simple.py) and the hot path (hotpath.py) both build pages here, so a page
is the same bytes whichever path rendered it: the hot path renders a missing page itself
(a freshly started worker answers its first request before Flask is loaded, issue 14).
"""

from __future__ import annotations

from collections.abc import Callable

from ..access.permissions import Principal, listing_view, token_covers
from ..context import Services
from ..models import Project
from . import render
from .pagecache import CachedPage, project_key, root_key


def serializer(content_type: str, html: Callable[[dict], bytes]) -> Callable[[dict], bytes]:
    """PEP 691 JSON for the JSON type, else the page's HTML form."""
    return render.to_json if content_type == render.JSON_TYPE else html


def root_page(svc: Services, principal: Principal, content_type: str, serial: int) -> CachedPage:
    """/simple/ as `principal` sees it at index serial `serial`."""
    serialize = serializer(content_type, render.root_html)
    return svc.pages.get_or_build(
        root_key(content_type, listing_view(principal)),
        serial,
        lambda: serialize(render.root_page(visible_projects(svc, principal))),
    )


def visible_projects(svc: Services, principal: Principal) -> list[tuple[str, str]]:
    """(name, display name) of the projects `principal` may see, within a token's list."""
    user = principal.user
    projects = svc.db.list_projects(
        viewer_id=user.id if user else None, everything=principal.is_admin
    )
    if principal.token is not None:
        projects = [p for p in projects if token_covers(principal.token, p[0])]
    return projects


def project_page(svc: Services, project: Project, content_type: str) -> CachedPage:
    """/simple/<project>/ of a hosted project, at its serial (the reader may read it)."""
    serialize = serializer(content_type, render.project_html)
    return svc.pages.get_or_build(
        project_key(project.name, content_type),
        project.serial,
        lambda: serialize(render.project_page(project.name, svc.db.project_files(project))),
    )
