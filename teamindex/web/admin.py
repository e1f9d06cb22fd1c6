"""/admin/: users, grants, allowlists, the audit log, yank and delete (administrators only).

Every change is written to the audit log with the administrator's name and address.
Destructive changes (yank, delete, user deletion) take two POSTs: the first renders a
confirmation page repeating the form's fields, the second (with confirmed=yes) acts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, flash, redirect, request, url_for
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from ..access.audit import ACTIONS, parse_since
from ..access.auth import AuthError, hash_password, validate_password, validate_username
from ..access.httpauth import client_ip
from ..access.netrules import ip_allowed, parse_cidr
from ..access.permissions import ROLES
from ..clock import utc_now
from ..context import services
from ..db import Conflict
from ..errors import HTTPError
from ..index.dists import DistributionError, validate_project_name
from ..index.removal import delete_dists
from ..models import Project, User
from .base import page, require_admin
from .pages import version_key
from .state import web_state

bp = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_LIMIT = 500


@bp.before_request
def _admins_only() -> None:
    require_admin()


def _record(action: str, **fields: Any) -> None:
    """Audit an administrator's change, like cli.record_cli_event does for the CLI."""
    services().audit.record(action, user=require_admin().name, ip=client_ip(), **fields)


def _confirm(title: str, lines: list[str], back: str) -> Response | None:
    """None once the form was confirmed; else the confirmation page for it."""
    if request.form.get("confirmed") == "yes":
        return None
    fields = [(k, v) for k, v in request.form.items() if k not in {"csrf_token", "confirmed"}]
    return page("confirm.html", title=title, lines=lines, fields=fields, back=back)


def _back(endpoint: str, message: str, **values: Any) -> Response:
    flash(message)
    return redirect(url_for(endpoint, **values), code=303)


@bp.get("/")
def overview() -> Response:
    db = services().db
    latest = {release.project: release for release in db.release_infos(None)}
    projects = [latest[name] for name in sorted(latest)]
    return page("admin_home.html", projects=projects, users=db.list_users())


# -- users -------------------------------------------------------------------------------------


@bp.get("/users")
def users() -> Response:
    return page("admin_users.html", users=services().db.list_users())


@bp.post("/users")
def add_user() -> Response:
    form = request.form
    svc = services()
    try:
        name = validate_username(form.get("name", "").strip())
        password = validate_password(form.get("password", ""))
    except AuthError as exc:
        raise HTTPError(400, f"User not added: {exc}.") from None
    admin = form.get("admin") == "yes"
    try:
        svc.db.add_user(
            name, hash_password(password, svc.settings.password_hash), is_admin=admin, now=utc_now()
        )
    except Conflict as exc:
        raise HTTPError(409, f"User not added: {exc}.") from None
    _record("user_add", detail=f"{name}{' (admin)' if admin else ''}")
    return _back("web.admin.users", f"Added {'administrator' if admin else 'user'} {name}.")


def _user(name: str) -> User:
    user = services().db.get_user(name)
    if user is None:
        raise HTTPError(404, f"No user {name!r}.")
    return user


@bp.post("/users/<name>/admin")
def set_admin(name: str) -> Response:
    user = _user(name)
    admin = request.form.get("admin") == "yes"
    if not admin and user.id == require_admin().user.id:  # type: ignore[union-attr]
        raise HTTPError(400, "You cannot remove your own administrator rights.")
    services().db.set_admin(user.name, admin)
    _record("user_admin", detail=f"{user.name} admin={'yes' if admin else 'no'}")
    verb = "is now an administrator" if admin else "is no longer an administrator"
    return _back("web.admin.users", f"{user.name} {verb}.")


@bp.post("/users/<name>/delete")
def delete_user(name: str) -> Response:
    user = _user(name)
    if user.id == require_admin().user.id:  # type: ignore[union-attr]
        raise HTTPError(400, "You cannot delete your own account.")
    asking = _confirm(
        f"Delete user {user.name}?",
        [
            "Their tokens, roles and IP allowlist go with them; their uploads stay.",
            "This cannot be undone.",
        ],
        url_for("web.admin.users"),
    )
    if asking is not None:
        return asking
    services().db.delete_user(user.name)
    _record("user_delete", detail=user.name)
    return _back("web.admin.users", f"Deleted user {user.name}.")


# -- grants ------------------------------------------------------------------------------------


@bp.get("/grants")
def grants() -> Response:
    db = services().db
    projects = sorted({r.project for r in db.release_infos(None)})
    return page(
        "admin_grants.html",
        grants=db.all_roles(),
        roles=ROLES,
        projects=projects,
        users=db.list_users(),
    )


def _project(name: str) -> Project:
    try:
        project = services().db.get_project(validate_project_name(name))
    except DistributionError as exc:
        raise HTTPError(400, str(exc)) from None
    if project is None:
        raise HTTPError(404, f"No project {name!r}.")
    return project


@bp.post("/grants")
def grant() -> Response:
    form = request.form
    project = _project(form.get("project", ""))
    user = _user(form.get("user", ""))
    role = form.get("role", "")
    if role not in ROLES:
        raise HTTPError(400, f"Role must be one of {', '.join(ROLES)}.")
    services().db.set_role(user.id, project.id, role)
    _record("grant", project=project.name, detail=f"{user.name} {role}")
    return _back("web.admin.grants", f"{user.name} is now {role} of {project.name}.")


@bp.post("/grants/revoke")
def revoke() -> Response:
    project = _project(request.form.get("project", ""))
    user = _user(request.form.get("user", ""))
    if not services().db.remove_role(user.id, project.id):
        raise HTTPError(404, f"{user.name} has no role in {project.name}.")
    _record("revoke", project=project.name, detail=user.name)
    return _back("web.admin.grants", f"{user.name} no longer has a role in {project.name}.")


# -- allowlists --------------------------------------------------------------------------------


@bp.get("/allowlists")
def allowlists() -> Response:
    db = services().db
    return page(
        "admin_allowlists.html",
        entries=db.list_allow_entries(),
        users=db.list_users(),
        client_ip=client_ip(),
    )


def _refuse_self_lockout(
    user: User | None, change: Callable[[list[str]], list[str]], verb: str, advice: str = ""
) -> None:
    """Refuse the one mistake the web cannot undo: an edit of the global list, or of the
    admin's own, after which the admin's address would not be allowed any more. An empty
    list allows everyone (netrules.ip_allowed)."""
    admin = require_admin().user
    assert admin is not None
    if user is not None and user.id != admin.id:
        return
    ip = client_ip()
    if not ip_allowed(ip, change(services().db.allowlist(user.id if user else None))):
        raise HTTPError(
            400, f"Not {verb}: your address {ip} would not be allowed any more.{advice}"
        )


@bp.post("/allowlists")
def allow_add() -> Response:
    form = request.form
    try:
        cidr = str(parse_cidr(form.get("cidr", "")))
    except ValueError as exc:
        raise HTTPError(400, f"Not added: {exc}.") from None
    user = _user(form["user"]) if form.get("user") else None
    db = services().db
    _refuse_self_lockout(
        user, lambda current: [*current, cidr], "added", " Add a range that includes it first."
    )
    try:
        db.add_allow(cidr, user.id if user else None, form.get("note", "").strip(), utc_now())
    except Conflict as exc:
        raise HTTPError(409, f"Not added: {exc}.") from None
    scope = f"user {user.name}" if user else "global"
    _record("allow_add", detail=f"{scope} {cidr}")
    return _back("web.admin.allowlists", f"Added {cidr} to the {scope} allowlist.")


@bp.post("/allowlists/remove")
def allow_remove() -> Response:
    form = request.form
    cidr = form.get("cidr", "")
    user = _user(form["user"]) if form.get("user") else None
    db = services().db
    _refuse_self_lockout(user, lambda current: [c for c in current if c != cidr], "removed")
    if not db.remove_allow(cidr, user.id if user else None):
        raise HTTPError(404, f"{cidr} is not on that allowlist.")
    scope = f"user {user.name}" if user else "global"
    _record("allow_remove", detail=f"{scope} {cidr}")
    return _back("web.admin.allowlists", f"Removed {cidr} from the {scope} allowlist.")


# -- audit -------------------------------------------------------------------------------------


@bp.get("/audit")
def audit() -> Response:
    args = request.args
    since_text = args.get("since", "7d").strip() or "7d"
    try:
        since = parse_since(since_text, datetime.now(timezone.utc))
    except ValueError as exc:
        raise HTTPError(400, str(exc).replace("--since", "since")) from None
    filters = {key: args.get(key, "").strip() or None for key in ("user", "project", "action")}
    if filters["project"]:
        filters["project"] = canonicalize_name(filters["project"])
    events = services().db.query_audit(since=since, limit=AUDIT_LIMIT, newest_first=True, **filters)
    return page(
        "admin_audit.html",
        events=events,
        since=since_text,
        filters={k: v or "" for k, v in filters.items()},
        actions=sorted(ACTIONS),
        limit=AUDIT_LIMIT,
    )


# -- projects: visibility, yank, delete --------------------------------------------------------


@bp.get("/project/<name>/")
def project(name: str) -> Response:
    found = _project(name)
    db = services().db
    releases = sorted(db.release_infos(None, found.id), key=lambda r: version_key(r.version))
    releases.reverse()
    files: dict[str, list[Any]] = {}
    for record in db.project_files(found):
        files.setdefault(record.version, []).append(record)
    return page(
        "admin_project.html",
        project=found,
        releases=releases,
        files=files,
        roles=db.project_roles(found.id),
    )


def _canonical(version: str) -> str:
    try:
        return canonicalize_version(Version(version))
    except InvalidVersion:
        raise HTTPError(400, f"Invalid version {version!r}.") from None


@bp.post("/project/<name>/visibility")
def visibility(name: str) -> Response:
    found = _project(name)
    value = request.form.get("visibility", "")
    if value not in {"team", "restricted"}:
        raise HTTPError(400, "Visibility is 'team' or 'restricted'.")
    services().db.set_visibility(found.name, value)
    _record("project_set", project=found.name, detail=f"visibility={value}")
    return _back("web.admin.project", f"{found.name} is now {value}.", name=found.name)


@bp.post("/project/<name>/yank")
def yank(name: str) -> Response:
    return _set_yanked(name, yanked=True)


@bp.post("/project/<name>/unyank")
def unyank(name: str) -> Response:
    return _set_yanked(name, yanked=False)


def _set_yanked(name: str, *, yanked: bool) -> Response:
    found = _project(name)
    version = request.form.get("version", "")
    reason = request.form.get("reason", "").strip()[:300] if yanked else ""
    back = url_for("web.admin.project", name=found.name)
    lines = (
        [
            "Installers skip a yanked release unless it is pinned with ==.",
            f"Reason shown to them: {reason or '(none)'}",
        ]
        if yanked
        else ["Installers will choose this release again."]
    )
    verb = "Yank" if yanked else "Unyank"
    asking = _confirm(f"{verb} {found.name} {version}?", lines, back)
    if asking is not None:
        return asking
    if not services().db.set_yanked(found.name, _canonical(version), yanked=yanked, reason=reason):
        raise HTTPError(404, f"No release {version} of {found.name}.")
    action = "yank" if yanked else "unyank"
    _record(action, project=found.name, detail=f"{version} {reason}".strip())
    return _back("web.admin.project", f"{verb}ed {found.name} {version}.", name=found.name)


@bp.post("/project/<name>/delete")
def delete(name: str) -> Response:
    found = _project(name)
    db = services().db
    version = request.form.get("version") or None
    filename = request.form.get("filename") or None
    canonical = _canonical(version) if version else None
    matching = [
        record
        for record in db.project_files(found)
        if (canonical is None or _canonical(record.version) == canonical)
        and (filename is None or record.filename == filename)
    ]
    doomed = [record.filename for record in matching]
    what = " ".join(part for part in (found.name, version, filename) if part)
    if not doomed and (version or filename):
        raise HTTPError(404, f"Nothing to delete: no file matches {what}.")
    asking = _confirm(
        f"Delete {what}?",
        [
            f"{len(doomed)} file(s) will be deleted: {', '.join(doomed) or '(none)'}.",
            "A deleted filename can never be uploaded again with other bytes; prefer "
            "yanking a release that people may have pinned. This cannot be undone.",
        ],
        url_for("web.admin.project", name=found.name),
    )
    if asking is not None:
        return asking
    deleted = delete_dists(
        db, services().storage, web_state().docs, found.name, canonical, filename
    )
    _record(
        "delete",
        project=found.name,
        filename=filename or "",
        detail=f"{what}: {len(deleted)} file(s)",
    )
    if version is None and filename is None:
        return _back("web.admin.overview", f"Deleted {what}: {len(deleted)} file(s).")
    return _back("web.admin.project", f"Deleted {what}: {len(deleted)} file(s).", name=found.name)
