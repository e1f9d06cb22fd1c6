"""/api/: what project maintainers do outside uploads, over Basic auth (scripts and CI).

    POST /api/<project>/<version>/yank    [reason=...]   owner, maintainer or admin
    POST /api/<project>/<version>/unyank

Yanking (PEP 592) is per release, as on PyPI. Tokens cannot yank: a token's scopes are
`read` and `upload`, and a leaked CI token should not be able to hide releases.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from packaging.utils import canonicalize_version
from packaging.version import Version

from ..access.httpauth import (
    authorize,
    client_ip,
    login_required,
    project_in_url,
    refuse_cross_site,
)
from ..access.permissions import Action
from ..context import services
from ..errors import HTTPError

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_REASON = 300
bp.before_request(refuse_cross_site)  # every route here changes the index


@bp.post("/<project>/<version>/yank")
@login_required
def yank(project: str, version: str) -> Response:
    return _set_yanked(project, version, yanked=True)


@bp.post("/<project>/<version>/unyank")
@login_required
def unyank(project: str, version: str) -> Response:
    return _set_yanked(project, version, yanked=False)


def _set_yanked(project: str, version: str, *, yanked: bool) -> Response:
    name = project_in_url(project)
    found, principal = authorize(Action.YANK, name, audit_as="yank" if yanked else "unyank")
    assert found is not None
    try:
        canonical = canonicalize_version(Version(version))
    except ValueError:  # InvalidVersion, or a number too long for int()
        raise HTTPError(400, f"Invalid version {version!r}.") from None
    reason = " ".join(request.form.get("reason", "").split())[:MAX_REASON] if yanked else ""
    svc = services()
    if not svc.db.set_yanked(found.name, canonical, yanked=yanked, reason=reason):
        raise HTTPError(404, f"Project {found.name!r} has no release {version!r}.")
    action = "yank" if yanked else "unyank"
    svc.audit.record(
        action,
        ip=client_ip(),
        user=principal.name,
        project=found.name,
        detail=f"{version} {reason}".strip(),
    )
    return Response(f"{action}ed {found.name} {version}\n", mimetype="text/plain")
