"""/publishers/<project>/: trusted publishers of a project, for its owners and admins.

The same rules as `teamindex publisher`: access.oidc.registry decides who may register
(owners of the project, admins; pending publishers only admins). Changes are audited with
the user's name and address.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, redirect, request, url_for

from ..access.httpauth import client_ip
from ..access.oidc.claims import (
    GITHUB_ISSUER,
    GITLAB_ISSUER,
    PublisherError,
    describe,
    generic_claims,
    github_claims,
    gitlab_claims,
)
from ..access.oidc.exchange import default_audience
from ..access.oidc.registry import may_manage, register
from ..clock import utc_now
from ..context import services
from ..db import Conflict
from ..errors import HTTPError
from ..index.dists import DistributionError, validate_project_name
from ..models import User
from .base import page, require_user

bp = Blueprint("publishers", __name__, url_prefix="/publishers")


def _manager(name: str) -> tuple[User, str]:
    """The logged-in user and the normalized project, if they may manage its publishers;
    a 404 otherwise, the same for a free name as for one they may not manage."""
    user = require_user().user
    assert user is not None
    try:
        project = validate_project_name(name)
    except DistributionError:
        raise HTTPError(404, f"No project named {name!r} in this index.") from None
    if not may_manage(services().db, user, project):
        raise HTTPError(404, f"No project named {project!r} in this index.")
    return user, project


@bp.get("/<name>/")
def publishers(name: str) -> Response:
    _user, project = _manager(name)
    svc = services()
    audience = svc.settings.oidc_audience or default_audience(bytes(current_app.secret_key or b""))
    listed = [(p, describe(p)) for p in svc.db.list_publishers(project)]
    return page(
        "publishers.html",
        project=project,
        publishers=listed,
        audience=audience,
        exists=svc.db.get_project(project) is not None,
        github_issuer=GITHUB_ISSUER,
        gitlab_issuer=GITLAB_ISSUER,
    )


def _claims(kind: str) -> dict[str, str]:
    form = request.form
    if kind == "github":
        return github_claims(
            form.get("repository", "").strip(),
            form.get("workflow", "").strip(),
            form.get("repository_owner_id", "").strip(),
            form.get("environment", "").strip() or None,
        )
    if kind == "gitlab":
        return gitlab_claims(
            form.get("project_path", "").strip(),
            form.get("ci_config_ref_uri", "").strip(),
            form.get("environment", "").strip() or None,
        )
    if kind == "oidc":
        return generic_claims(form.get("claims", "").split())
    raise PublisherError("kind must be github, gitlab or oidc")


@bp.post("/<name>/")
def add(name: str) -> Response:
    user, project = _manager(name)
    kind = request.form.get("kind", "")
    default_issuer = {"github": GITHUB_ISSUER, "gitlab": GITLAB_ISSUER}.get(kind, "")
    issuer = request.form.get("issuer", "").strip() or default_issuer
    try:
        publisher = register(services().db, user, project, kind, issuer, _claims(kind))
    except (PublisherError, Conflict) as exc:
        raise HTTPError(400, str(exc)) from None
    services().audit.record(
        "publisher_add",
        user=user.name,
        ip=client_ip(),
        project=project,
        detail=f"id {publisher.id}: {describe(publisher)}",
    )
    flash(f"Publisher {publisher.id} added.")
    return redirect(url_for("web.publishers.publishers", name=project), code=303)


@bp.post("/<name>/remove")
def remove(name: str) -> Response:
    user, project = _manager(name)
    db = services().db
    try:
        publisher = db.get_publisher(int(request.form.get("id", "")))
    except ValueError:
        publisher = None
    if publisher is None or publisher.project != project:
        raise HTTPError(404, "No such publisher for this project.")
    db.remove_publisher(publisher.id, utc_now())
    services().audit.record(
        "publisher_remove",
        user=user.name,
        ip=client_ip(),
        project=project,
        detail=describe(publisher),
    )
    flash(f"Publisher {publisher.id} removed; the tokens it minted are revoked.")
    return redirect(url_for("web.publishers.publishers", name=project), code=303)
