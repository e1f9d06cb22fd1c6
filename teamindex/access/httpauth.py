"""Who is asking, and may they: HTTP Basic auth (flask-httpauth), tokens, IP rules, throttling.

Order per request (issue 4): the global IP allowlist first (403 before any credential is
looked at, so outsiders get no password oracle), then the throttle (429), then credentials
(401 with `WWW-Authenticate: Basic realm="teamindex"`, which pip, uv and poetry need before
they send credentials; a password from outside the user's own IP list gets that same 401),
then a token's and its owner's IP lists (403).
Views then ask `authorize()`, which applies permissions.decide for the project at hand.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NoReturn

from flask import Response, request
from flask_httpauth import HTTPBasicAuth
from packaging.utils import canonicalize_name

from ..context import Services, services
from ..errors import HTTPError, plain_error
from ..index.dists import is_project_name
from ..models import LoginFacts, Project, Token, User
from .auth import TOKEN_USERNAME, looks_like_token, token_digest, token_expired
from .earlycheck import basic_credentials
from .netrules import ip_allowed, user_key
from .permissions import (
    ANONYMOUS,
    Action,
    CreatePolicy,
    Decision,
    Principal,
    ProjectFacts,
    decide,
    token_limit,
)

log = logging.getLogger("teamindex")

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
    and the user's and token's own IP lists (403). None means wrong credentials; a revoked
    or expired token raises its own 401.

    One database statement reads the user (or token and owner) with every allowlist that
    applies; the global list is still checked before the credential is looked at. A login
    that passes is remembered under `remember_as` (the Authorization header) for the hot
    path, tagged with the auth serial read in that same statement. A header remembered
    from this address skips the throttle: logins verified before a block keep working
    while new verifications from a blocked address or name wait."""
    svc = services()
    ip = client_ip()
    is_token = _is_token(username, password)
    facts = (
        svc.db.token_login(token_digest(password)) if is_token else svc.db.password_login(username)
    )
    _require_on_list(ip, facts.global_allowlist, username, "")
    # Token failures count against the address only (see netrules.Throttle).
    throttle_user = (
        None
        if is_token or not username
        else user_key(username, facts.user.name if facts.user else None)
    )
    if not _verified_before(svc, remember_as, ip):
        wait = svc.throttle.retry_after(ip, throttle_user)
        if wait:
            raise HTTPError(
                429,
                f"Too many failed logins; retry in {wait} seconds.",
                {"Retry-After": str(wait)},
            )
    principal = (
        _check_token(svc, facts, username) if is_token else _check_password(svc, facts, password)
    )
    # A password from outside the user's own list fails exactly like a wrong one (the hash
    # is checked either way, so the time is the same too): a distinct answer for the right
    # password would let outsiders guess it from there. The audit log tells admins which.
    # Token secrets cannot be guessed: their owner's and their own lists answer 403 below.
    # Such an attempt counts against the user name only, right password or wrong: it can
    # never succeed from there (no guessing to stop), and counting the address would let a
    # user whose list is the VPN, running pip at the office, block everyone at the office.
    off_list = not is_token and not ip_allowed(ip, facts.user_allowlist)
    if principal is None or off_list:
        event = "auth_failed" if principal is None else "ip_denied"
        svc.audit.record(event, ip=ip, user=username, outcome="denied", best_effort=True)
        for kind, subject in svc.throttle.failure(ip, throttle_user, count_address=not off_list):
            svc.audit.record(
                "throttled",
                ip=ip,
                user=username,
                outcome="blocked",
                detail=f"{kind} {subject}",
                best_effort=True,
            )
        return None
    assert principal.user is not None
    _require_on_list(ip, facts.user_allowlist, principal.user.name, " for this user")
    _require_token_address(ip, principal)
    svc.throttle.success(ip, principal.user.name)
    if remember_as:
        svc.logins.remember(remember_as, ip, username, principal, facts.auth_serial)
    return principal


# Fetch metadata a browser sends with a request it was not told to make by another site
# (https://www.w3.org/TR/fetch-metadata/): "none" is the user typing or bookmarking a URL.
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})
CROSS_SITE_REFUSED = "Cross-site requests may not change the index; send it from a tool."


def refuse_cross_site() -> None:
    """403 for a browser's request made by another site (or a sandboxed page, Origin: null)
    to an endpoint that changes the index with Basic auth: a browser adds remembered Basic
    credentials to it, and no CSRF token protects these endpoints. twine, uv, poetry and
    curl send neither Sec-Fetch-Site nor Origin, so they are never refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in SAME_ORIGIN_SITES:
        raise HTTPError(403, CROSS_SITE_REFUSED)
    origin = request.headers.get("Origin")
    if origin is not None and origin.strip().lower() != request.host_url.rstrip("/").lower():
        raise HTTPError(403, CROSS_SITE_REFUSED)


def _verified_before(svc: Services, remember_as: str | None, ip: str) -> bool:
    """True when this Authorization header passed every check from this address recently
    (the hot path's LoginCache): not a new verification, so a block does not stop it. At
    any auth serial: the credentials are verified again against current facts anyway, and
    a change elsewhere (a new user, a revoked token) must not end every login of a blocked
    office. An attacker cannot use it: only the header's holder made it from here."""
    if not remember_as:
        return False
    return svc.logins.lookup(remember_as, ip) is not None


# Set by serving.BodyGate when waitress refused a request on its headers (body unread).
EARLY_REFUSAL = "HTTP_TEAMINDEX_REFUSED"


def answer_early_refusal() -> None:
    """before_request: answer a request the server refused before reading its body, with
    the same status, words and audit as the checks below would give it later. Its body was
    never read, so whatever the checks say now, it is refused."""
    status = request.environ.get(EARLY_REFUSAL)
    if status is None:
        return
    if status == "403":
        require_address_allowed()  # raises the usual 403 (and audits it)
    if status == "429":
        wait = max(services().throttle.retry_after(client_ip(), None), 1)
        raise HTTPError(
            429, f"Too many failed logins; retry in {wait} seconds.", {"Retry-After": str(wait)}
        )
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if credentials is not None and _is_token(*credentials):
        # A dead or unknown token: the precise "token revoked/expired", or a counted and
        # audited failure, exactly as without the early refusal.
        authenticate(*credentials)
    raise HTTPError(401, "Invalid or missing credentials for teamindex.", _challenge())


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
    if token is None or user is None:
        return None
    if token.revoked is not None:
        _refuse_known_token(svc, token, "revoked")
    if token_expired(token.expires, datetime.now(timezone.utc)):
        _refuse_known_token(svc, token, "expired")
    # With the owner's name instead of __token__, the name must match (constant time).
    if username != TOKEN_USERNAME and not hmac.compare_digest(
        username.encode(), token.user_name.encode()
    ):
        return None
    svc.token_touch.touch(token.id, client_ip())
    return Principal(user, token)


def _refuse_known_token(svc: Services, token: Token, state: str) -> NoReturn:
    """401 with the reason for a secret that matches a revoked or expired token. Not a
    guess (only its holder has it), so it does not count towards the throttle: a CI job
    still using an old token must not block its office's address. Only the holder of the
    secret learns the reason."""
    ip = client_ip()
    log.info("%s token %d of %s used from %s", state, token.id, token.user_name, ip)
    svc.audit.record(
        "auth_failed",
        ip=ip,
        user=token.user_name,
        token_id=token.id,
        outcome="denied",
        detail=f"token {state}",
        best_effort=True,
    )
    raise HTTPError(401, f"Invalid credentials: token {state}.", _challenge())


@basic_auth.error_handler
def _unauthorized(status: int) -> Response:
    return plain_error(status, "Invalid or missing credentials for teamindex.")


def current_principal() -> Principal:
    principal = basic_auth.current_user()
    return principal if isinstance(principal, Principal) else ANONYMOUS


login_required = basic_auth.login_required


def authorize(
    action: Action, name: str, principal: Principal | None = None, audit_as: str = ""
) -> tuple[Project | None, Principal]:
    """Apply the permission rule for `action` on project `name` (normalized), or raise.

    HIDE answers 404 exactly like a missing project; DENY is 403, or 401 for an anonymous
    reader trying to write (so clients know to send credentials). `principal` defaults to
    the Basic-auth caller; the web pages pass their session's. A refusal is audited as
    `audit_as` (outcome "denied") when given, with the real reason: a hidden project is
    named as such in the log, though the caller's answer is the missing project's.
    """
    principal = principal or current_principal()
    user: User | None = principal.user
    svc = services()
    project, role = svc.db.project_with_role(name, user.id if user else None)
    creating = CreatePolicy.of(svc.settings.new_projects)
    decision = decide(principal, action, ProjectFacts.of(name, project, role), creating)
    if decision is not Decision.ALLOW and audit_as:
        _audit_refusal(audit_as, name, principal, decision, project is not None)
    limit = None if decision is Decision.ALLOW else token_limit(principal, action, name)
    if limit is not None:  # the token's own limits: the same whether `name` exists or not
        raise HTTPError(404 if decision is Decision.HIDE else 403, limit)
    if decision is Decision.HIDE:
        raise HTTPError(404, f"No project named {name!r} in this index.")
    if decision is Decision.NOT_CREATOR:
        # The same words for a hidden name as for a free one (issue 10): "creating", never
        # "exists"; the admin's command reserves a free name and cannot harm a taken one.
        raise HTTPError(
            403,
            f"Creating project {name!r} is reserved to {creating.describe()} here: ask an "
            f"administrator to run `teamindex project create {name} --owner {principal.name}`.",
        )
    if decision is Decision.DENY:
        if user is None:
            raise HTTPError(401, "Uploading needs credentials.", _challenge())
        verb = "upload to" if action is Action.UPLOAD else action.value  # Warehouse's words
        raise HTTPError(
            403, f"The user {principal.name!r} isn't allowed to {verb} project {name!r}."
        )
    return project, principal


def _audit_refusal(
    action: str, name: str, principal: Principal, decision: Decision, exists: bool
) -> None:
    if decision is Decision.NOT_CREATOR:
        hidden = " (hidden: restricted project)" if exists else ""
        reason = f"new projects are not theirs to create{hidden}"
    elif decision is Decision.DENY:
        reason = "no credentials" if principal.user is None else "not allowed"
        if principal.token is not None:
            reason = f"not allowed for token {principal.token.id} (scope or project list)"
    else:
        reason = "hidden: restricted project" if exists else "no such project"
    audit_denied(action, name, principal, reason)


def audit_denied(action: str, name: str, principal: Principal, reason: str) -> None:
    """Audit a refused action on project `name` with its reason (best effort: a refusal
    must not turn into a 503 because another process holds the write lock)."""
    services().audit.record(
        action,
        ip=client_ip(),
        user=principal.name,
        token_id=principal.token.id if principal.token else None,
        project=name,
        outcome="denied",
        detail=reason,
        best_effort=True,
    )


def project_in_url(text: str) -> str:
    """The normalized project name of a URL segment. A segment that is no PEP 508 name (a
    look-alike such as the Kelvin sign, which lower() turns into "k") names no project: the
    same 404 as a missing one, never a redirect to the ASCII twin."""
    name = canonicalize_name(text)
    if not is_project_name(text):
        raise HTTPError(404, f"No project named {name!r} in this index.")
    return name


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}"'}
