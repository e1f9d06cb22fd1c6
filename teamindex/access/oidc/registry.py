"""Who may register and remove publishers: the project's owners and admins; a pending
publisher (the project does not exist yet) only admins, since its first upload creates the
project, owned by that admin. Shared by the CLI and the web pages."""

from __future__ import annotations

from ...clock import utc_now
from ...db import Database
from ...models import Publisher, User
from .claims import PublisherError, check_issuer


def may_manage(db: Database, user: User, project: str) -> bool:
    """Admins, and owners of an existing project."""
    if user.is_admin:
        return True
    found, role = db.project_with_role(project, user.id)
    return found is not None and role == "owner"


def register(
    db: Database, user: User, project: str, kind: str, issuer: str, claims: dict[str, str]
) -> Publisher:
    """Add a publisher for `project` (normalized) whose minted tokens narrow `user`'s rights;
    raises PublisherError (not allowed, bad issuer) or db.Conflict (already there)."""
    issuer = check_issuer(issuer)
    found = db.get_project(project)
    if found is None and not user.is_admin:
        raise PublisherError(
            f"no project {project!r}: only administrators register pending publishers"
        )
    if not may_manage(db, user, project):
        raise PublisherError(f"{user.name!r} is not an owner of {project!r}")
    publisher_id = db.add_publisher(
        project=project,
        project_id=found.id if found else None,
        kind=kind,
        issuer=issuer,
        claims=claims,
        user_id=user.id,
        now=utc_now(),
    )
    publisher = db.get_publisher(publisher_id)
    assert publisher is not None
    return publisher
