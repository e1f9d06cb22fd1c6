"""/account/: change your password; create, list and revoke your API tokens."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, Response, flash, redirect, request, url_for

from ..access.auth import (
    AuthError,
    hash_password,
    new_token_secret,
    parse_expiry,
    token_digest,
    validate_password,
)
from ..access.httpauth import authenticate, client_ip
from ..access.netrules import parse_cidr
from ..access.permissions import SCOPES, Principal
from ..clock import utc_stamp
from ..context import services
from ..errors import HTTPError
from ..index.dists import project_pattern
from .base import page, require_user
from .session import log_in

bp = Blueprint("account", __name__, url_prefix="/account")

EXPIRY_CHOICES = ("30d", "90d", "365d", "never")


@bp.get("/")
def account() -> Response:
    principal = require_user()
    return _account_page(principal)


def _account_page(
    principal: Principal, *, secret: str = "", error: str = "", status: int = 200
) -> Response:
    assert principal.user is not None
    tokens = services().db.list_tokens(principal.user.id)
    tokens.sort(key=lambda token: (token.revoked is not None, -token.id))
    response = page(
        "account.html",
        tokens=tokens,
        scopes=SCOPES,
        expiry_choices=EXPIRY_CHOICES,
        secret=secret,
        error=error,
        status=status,
    )
    return response


@bp.post("/password")
def change_password() -> Response:
    principal = require_user()
    assert principal.user is not None
    user = principal.user
    current = request.form.get("current", "")
    new = request.form.get("new", "")
    if new != request.form.get("repeat", ""):
        return _account_page(principal, error="The new passwords do not match.", status=400)
    # The same check (and throttle) as a login, so a stolen session cannot guess passwords.
    if authenticate(user.name, current) is None:
        return _account_page(principal, error="The current password is wrong.", status=400)
    try:
        new = validate_password(new)
    except AuthError as exc:
        return _account_page(principal, error=f"New password: {exc}.", status=400)
    svc = services()
    svc.db.set_password(user.name, hash_password(new, svc.settings.password_hash))
    svc.audit.record("password_change", ip=client_ip(), user=user.name, detail=user.name)
    # The stored hash changed: cached checks of the old password and every other session
    # of this user end now; this session continues under the new password.
    updated = svc.db.get_user(user.name)
    assert updated is not None
    log_in(updated)
    flash("Password changed. Other sessions have been logged out.")
    return redirect(url_for("web.account.account"), code=303)


@bp.post("/tokens")
def create_token() -> Response:
    principal = require_user()
    assert principal.user is not None
    form = request.form
    scope = form.get("scope", "read")
    now = datetime.now(timezone.utc)
    try:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        projects = [_project_pattern(p) for p in _words(form.get("projects", ""))]
        allow_ips = [str(parse_cidr(c)) for c in _words(form.get("allow_ips", ""))]
        expires = parse_expiry(form.get("expires", "90d") or "90d", now)
    except (AuthError, ValueError) as exc:
        return _account_page(principal, error=f"Token not created: {exc}.", status=400)
    note = form.get("note", "").strip()[:200]
    secret = new_token_secret()
    svc = services()
    token_id = svc.db.add_token(
        principal.user.id,
        token_digest(secret),
        scope=scope,
        projects=projects,
        allow_ips=allow_ips,
        note=note,
        expires=expires,
        now=utc_stamp(now),
    )
    svc.audit.record(
        "token_create",
        ip=client_ip(),
        user=principal.user.name,
        token_id=token_id,
        detail=f"scope={scope} projects={','.join(projects) or '*'} note={note}",
    )
    # Shown once, in this response only (never in the cookie: it is signed, not encrypted).
    return _account_page(principal, secret=secret)


def _words(text: str) -> list[str]:
    return text.replace(",", " ").split()


def _project_pattern(text: str) -> str:
    """A project name or glob as tokens store it: normalized unless it holds a wildcard."""
    return project_pattern(text)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Response:
    principal = require_user()
    assert principal.user is not None
    svc = services()
    token = svc.db.get_token(token_id)
    if token is None or token.user_id != principal.user.id:
        raise HTTPError(404, f"You have no token {token_id}.")
    now = utc_stamp()
    if svc.db.revoke_token(token_id, now):
        svc.audit.record(
            "token_revoke", ip=client_ip(), user=principal.user.name, token_id=token_id
        )
        flash(f"Token {token_id} revoked.")
    return redirect(url_for("web.account.account"), code=303)
