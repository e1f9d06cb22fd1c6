"""Who is asking, and may they: HTTP Basic auth (flask-httpauth), tokens, IP rules, throttling.

Order per request (issue 4): the global IP allowlist first (403 before any credential is
looked at, so outsiders get no password oracle), then the throttle (429), then credentials
(401 with `WWW-Authenticate: Basic realm="teamindex"`, which pip, uv and poetry need before
they send credentials), then the user's and token's own IP lists (403).
Views then ask `authorize()`, which applies permissions.decide for the project at hand.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime, timezone

from flask import Response, request
from flask_httpauth import HTTPBasicAuth

from .auth import TOKEN_USERNAME, looks_like_token, token_digest, token_expired
from .context import Services, services
from .errors import HTTPError, plain_error
from .models import LoginFacts, Project, User
from .netrules import ip_allowed
from .permissions import ANONYMOUS, Action, Decision, Principal, ProjectFacts, decide

REALM = "teamindex"
TOKEN_TOUCH_SECONDS = 60.0  # last-used is written at most this often per token

basic_auth = HTTPBasicAuth(realm=REALM)


def client_ip() -> str:
    """The socket peer, or the proxy-reported client when waitress was told to trust the
    proxy (it rewrites REMOTE_ADDR and drops forwarded headers from anyone else)."""
    return request.remote_addr or ""


@basic_auth.verify_password
def _verify(username: str, password: str) -> Principal | None:
    if not username and not password:
        require_address_allowed(username)
        return ANONYMOUS if services().settings.anonymous_read else None
    return authenticate(username, password, remember_as=request.headers.get("Authorization"))


def authenticate(username: str, password: str, remember_as: str | None = None) -> Principal | None:
    """Check a user name with a password or token; Basic auth and the web login form share
    it, so both get the global allowlist (403), the throttle (429), the audit of failures
    and the user's and token's own IP lists (403). None means wrong credentials.

    One database statement reads the user (or token and owner) with every allowlist that
    applies; the global list is still checked before the credential is looked at. A login
    that passes is remembered under `remember_as` (the Authorization header) for the hot
    path, tagged with the auth serial read in that same statement."""
    svc = services()
    ip = client_ip()
    is_token = _is_token(username, password)
    facts = (
        svc.db.token_login(token_digest(password)) if is_token else svc.db.password_login(username)
    )
    _require_on_list(ip, facts.global_allowlist, username, "")
    wait = svc.throttle.retry_after(ip, username)
    if wait:
        raise HTTPError(
            429, f"Too many failed logins; retry in {wait} seconds.", {"Retry-After": str(wait)}
        )
    principal = (
        _check_token(svc, facts, username) if is_token else _check_password(svc, facts, password)
    )
    if principal is None:
        svc.audit.record("auth_failed", ip=ip, user=username, outcome="denied", best_effort=True)
        if svc.throttle.failure(ip, username):
            svc.audit.record("throttled", ip=ip, user=username, outcome="blocked", best_effort=True)
        return None
    assert principal.user is not None
    _require_on_list(ip, facts.user_allowlist, principal.user.name, " for this user")
    _require_token_address(ip, principal)
    svc.throttle.success(ip, principal.user.name)
    if remember_as:
        svc.logins.remember(remember_as, ip, username, principal, facts.auth_serial)
    return principal


def require_address_allowed(username: str = "") -> None:
    """403 unless the client address is on the global allowlist (empty list: everyone)."""
    _require_on_list(client_ip(), services().db.allowlist(None), username, "")


def require_principal_address_allowed(principal: Principal) -> None:
    """403 unless the client address is on the user's and the token's own lists (for a
    principal that was authenticated earlier, e.g. by a session)."""
    assert principal.user is not None
    ip = client_ip()
    _require_on_list(
        ip, services().db.allowlist(principal.user.id), principal.user.name, " for this user"
    )
    _require_token_address(ip, principal)


def _require_on_list(ip: str, cidrs: Sequence[str], user: str, scope: str) -> None:
    if not ip_allowed(ip, cidrs):
        services().audit.record("ip_denied", ip=ip, user=user, best_effort=True)
        raise HTTPError(403, f"Access from {ip} is not allowed{scope}.")


def _require_token_address(ip: str, principal: Principal) -> None:
    token = principal.token
    if token is not None and not ip_allowed(ip, token.allow_ips):
        assert principal.user is not None
        services().audit.record(
            "ip_denied", ip=ip, user=principal.user.name, token_id=token.id, best_effort=True
        )
        raise HTTPError(403, f"Access from {ip} is not allowed for this token.")


def _is_token(username: str, password: str) -> bool:
    return username == TOKEN_USERNAME or looks_like_token(password)


def _check_password(svc: Services, facts: LoginFacts, password: str) -> Principal | None:
    return Principal(facts.user) if svc.credentials.verify(facts.user, password) else None


def _check_token(svc: Services, facts: LoginFacts, username: str) -> Principal | None:
    token, user = facts.token, facts.user
    if token is None or user is None or token.revoked is not None:
        return None
    if token_expired(token.expires, datetime.now(timezone.utc)):
        return None
    # With the owner's name instead of __token__, the name must match (constant time).
    if username != TOKEN_USERNAME and not hmac.compare_digest(
        username.encode(), token.user_name.encode()
    ):
        return None
    svc.token_touch.touch(token.id, client_ip())
    return Principal(user, token)


@basic_auth.error_handler
def _unauthorized(status: int) -> Response:
    return plain_error(status, "Invalid or missing credentials for teamindex.")


def current_principal() -> Principal:
    principal = basic_auth.current_user()
    return principal if isinstance(principal, Principal) else ANONYMOUS


login_required = basic_auth.login_required


def authorize(
    action: Action, name: str, principal: Principal | None = None
) -> tuple[Project | None, Principal]:
    """Apply the permission rule for `action` on project `name` (normalized), or raise.

    HIDE answers 404 exactly like a missing project; DENY is 403, or 401 for an anonymous
    reader trying to write (so clients know to send credentials). `principal` defaults to
    the Basic-auth caller; the web pages pass their session's.
    """
    principal = principal or current_principal()
    user: User | None = principal.user
    project, role = services().db.project_with_role(name, user.id if user else None)
    decision = decide(principal, action, ProjectFacts.of(name, project, role))
    if decision is Decision.HIDE:
        raise HTTPError(404, f"No project named {name!r} in this index.")
    if decision is Decision.DENY:
        if user is None:
            raise HTTPError(401, "Uploading needs credentials.", _challenge())
        verb = "upload to" if action is Action.UPLOAD else action.value  # Warehouse's words
        raise HTTPError(
            403, f"The user {principal.name!r} isn't allowed to {verb} project {name!r}."
        )
    return project, principal


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}"'}
