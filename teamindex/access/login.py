"""Checking a user name with a password or token: the one function every login goes
through (Basic auth in Flask, the hot path's first request of a login, the web form). No Flask.

Order (issue 4): the global IP allowlist first (403 before any credential is looked at, so
outsiders get no password oracle), then the throttle (429), then the credentials (None: the
caller answers 401), then the user's and the token's own IP lists (403). Refusals raise
HTTPError with the words the client shows; the caller renders them.

It lives apart from httpauth (the flask-httpauth glue) so that the hot path can verify a
login before Flask is imported: a CI runner's first request to a freshly started server is
answered without loading Flask at all (cold start, issue 14).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NoReturn

from ..context import Services
from ..errors import HTTPError
from ..models import LoginFacts, Token
from .auth import TOKEN_USERNAME, looks_like_token, token_digest, token_expired
from .netrules import ip_allowed, user_key
from .permissions import ANONYMOUS, Principal

log = logging.getLogger("teamindex")

REALM = "teamindex"
# The environ key under which the hot path leaves its Verified for the request, for Flask.
# Clients cannot set it (their headers arrive as HTTP_*).
VERIFIED_KEY = "teamindex.verified"
# Set by serving.BodyGate when waitress refused a request on its headers (body unread);
# httpauth.answer_early_refusal answers it.
EARLY_REFUSAL = "HTTP_TEAMINDEX_REFUSED"
CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}


def challenge() -> dict[str, str]:
    """The WWW-Authenticate header pip, uv and poetry need before they send credentials."""
    return dict(CHALLENGE)


@dataclass(frozen=True)
class Verified:
    """The outcome of `verify` for one request's Authorization header, kept in its environ
    when the hot path verified it, so that Flask reuses it rather than checking (and
    counting a failure, or writing the audit) twice."""

    authorization: str
    principal: Principal | None
    error: Exception | None = None  # raised again in Flask, whose handlers answer it

    def outcome(self) -> Principal | None:
        if self.error is not None:
            raise self.error
        return self.principal


def verify(
    svc: Services, ip: str, username: str, password: str, remember_as: str | None
) -> Principal | None:
    """Basic auth's check: no credentials at all is the anonymous reader (where allowed,
    and from an allowed address), anything else goes through `authenticate`."""
    if not username and not password:
        require_address_allowed(svc, ip, username)
        return ANONYMOUS if svc.settings.anonymous_read else None
    return authenticate(svc, ip, username, password, remember_as)


def verify_once(
    svc: Services, ip: str, username: str, password: str, authorization: str
) -> Verified:
    """`verify`, with whatever it raised caught: what the hot path keeps for Flask. A
    refusal (HTTPError) or a failure (a database busy past its timeout, say) is raised again
    there, so it is answered as if Flask had checked, and never checked a second time."""
    try:
        return Verified(authorization, verify(svc, ip, username, password, authorization))
    except Exception as exc:  # handed to Flask's handlers, not swallowed
        return Verified(authorization, None, exc)


def authenticate(
    svc: Services, ip: str, username: str, password: str, remember_as: str | None = None
) -> Principal | None:
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
    is_token = is_token_login(username, password)
    facts = (
        svc.db.token_login(token_digest(password)) if is_token else svc.db.password_login(username)
    )
    require_on_list(svc, ip, facts.global_allowlist, username, "")
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
        _check_token(svc, ip, facts, username)
        if is_token
        else _check_password(svc, facts, password)
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
    require_on_list(svc, ip, facts.user_allowlist, principal.user.name, " for this user")
    require_token_address(svc, ip, principal)
    svc.throttle.success(ip, principal.user.name)
    if remember_as:
        svc.logins.remember(remember_as, ip, username, principal, facts.auth_serial)
    return principal


def _verified_before(svc: Services, remember_as: str | None, ip: str) -> bool:
    """True when this Authorization header passed every check from this address recently
    (the hot path's LoginCache): not a new verification, so a block does not stop it. At
    any auth serial: the credentials are verified again against current facts anyway, and
    a change elsewhere (a new user, a revoked token) must not end every login of a blocked
    office. An attacker cannot use it: only the header's holder made it from here."""
    if not remember_as:
        return False
    return svc.logins.lookup(remember_as, ip) is not None


def require_address_allowed(svc: Services, ip: str, username: str = "") -> None:
    """403 (audited) unless `ip` is on the global allowlist (empty list: everyone)."""
    require_on_list(svc, ip, svc.db.allowlist(None), username, "")


def require_on_list(svc: Services, ip: str, cidrs: Sequence[str], user: str, scope: str) -> None:
    """403 (audited) unless `ip` is on `cidrs` (empty list: everyone)."""
    if not ip_allowed(ip, cidrs):
        svc.audit.record("ip_denied", ip=ip, user=user, best_effort=True)
        raise HTTPError(403, f"Access from {ip} is not allowed{scope}.")


def require_token_address(svc: Services, ip: str, principal: Principal) -> None:
    """403 (audited) unless `ip` is on the principal's token's own list."""
    token = principal.token
    if token is not None and not ip_allowed(ip, token.allow_ips):
        assert principal.user is not None
        svc.audit.record(
            "ip_denied", ip=ip, user=principal.user.name, token_id=token.id, best_effort=True
        )
        raise HTTPError(403, f"Access from {ip} is not allowed for this token.")


def is_token_login(username: str, password: str) -> bool:
    return username == TOKEN_USERNAME or looks_like_token(password)


def _check_password(svc: Services, facts: LoginFacts, password: str) -> Principal | None:
    return Principal(facts.user) if svc.credentials.verify(facts.user, password) else None


def _check_token(svc: Services, ip: str, facts: LoginFacts, username: str) -> Principal | None:
    token, user = facts.token, facts.user
    if token is None or user is None:
        return None
    if token.revoked is not None:
        _refuse_known_token(svc, ip, token, "revoked")
    if token_expired(token.expires, datetime.now(timezone.utc)):
        _refuse_known_token(svc, ip, token, "expired")
    # With the owner's name instead of __token__, the name must match (constant time).
    if username != TOKEN_USERNAME and not hmac.compare_digest(
        username.encode(), token.user_name.encode()
    ):
        return None
    svc.token_touch.touch(token.id, ip)
    return Principal(user, token)


def _refuse_known_token(svc: Services, ip: str, token: Token, state: str) -> NoReturn:
    """401 with the reason for a secret that matches a revoked or expired token. Not a
    guess (only its holder has it), so it does not count towards the throttle: a CI job
    still using an old token must not block its office's address. Only the holder of the
    secret learns the reason."""
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
    raise HTTPError(401, f"Invalid credentials: token {state}.", challenge())
