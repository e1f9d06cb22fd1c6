"""Who is asking, and may they, for Flask views: HTTP Basic auth (flask-httpauth) on top of
access/login.py, which checks the credentials, IP rules and throttle.

Order per request (issue 4; login.py): the global IP allowlist first (403 before any
credential is looked at, so outsiders get no password oracle), then the throttle (429), then
credentials (401 with `WWW-Authenticate: Basic realm="teamindex"`, which pip, uv and poetry
need before they send credentials; a password from outside the user's own IP list gets that
same 401), then a token's and its owner's IP lists (403).
Views then ask `authorize()`, which applies permissions.decide for the project at hand.
"""

from __future__ import annotations

import logging

from flask import Response, request
from flask_httpauth import HTTPBasicAuth
from packaging.utils import canonicalize_name

from ..context import services
from ..errors import HTTPError, plain_error
from ..index.dists import is_project_name
from ..models import Project, User
from . import login
from .earlycheck import basic_credentials
from .login import EARLY_REFUSAL, REALM, Verified
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

basic_auth = HTTPBasicAuth(realm=REALM)


def client_ip() -> str:
    """The socket peer, or the proxy-reported client when waitress was told to trust the
    proxy (it rewrites REMOTE_ADDR and drops forwarded headers from anyone else)."""
    return request.remote_addr or ""


@basic_auth.verify_password
def _verify(username: str, password: str) -> Principal | None:
    verified = request.environ.get(login.VERIFIED_KEY)
    header = request.headers.get("Authorization")
    if isinstance(verified, Verified) and verified.authorization == header:
        return verified.outcome()  # the hot path checked these credentials already
    return login.verify(services(), client_ip(), username, password, header)


def authenticate(username: str, password: str, remember_as: str | None = None) -> Principal | None:
    """login.authenticate for the request at hand (the web login form, the account page)."""
    return login.authenticate(services(), client_ip(), username, password, remember_as)


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
    if credentials is not None and login.is_token_login(*credentials):
        # A dead or unknown token: the precise "token revoked/expired", or a counted and
        # audited failure, exactly as without the early refusal.
        authenticate(*credentials)
    raise HTTPError(401, "Invalid or missing credentials for teamindex.", _challenge())


def require_address_allowed(username: str = "") -> None:
    """403 unless the client address is on the global allowlist (empty list: everyone)."""
    login.require_address_allowed(services(), client_ip(), username)


def require_principal_address_allowed(principal: Principal) -> None:
    """403 unless the client address is on the user's and the token's own lists (for a
    principal that was authenticated earlier, e.g. by a session)."""
    assert principal.user is not None
    svc = services()
    ip = client_ip()
    login.require_on_list(
        svc, ip, svc.db.allowlist(principal.user.id), principal.user.name, " for this user"
    )
    login.require_token_address(svc, ip, principal)


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


_challenge = login.challenge
