"""Trade a CI's OIDC token for a short-lived upload token (PyPI's trusted publishing).

The order matters: the issuer is looked up among registered publishers before any key is
fetched (no outbound request a stranger can cause), the token is verified, matched against
the publishers, its `jti` is spent, and only then is a token minted: upload scope, the
matching publishers' projects, owned by the user who registered them, expiring within
MAX_MINTED_SECONDS and never after the CI token itself.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ...clock import utc_stamp
from ...db import Database
from ...models import Publisher
from ..auth import new_token_secret, token_digest
from ..permissions import Action, Decision, Principal, ProjectFacts, decide
from .claims import Mismatch, mismatch, run_details
from .keys import IssuerKeysError, KeyStore

MAX_MINTED_SECONDS = 15 * 60
AUDIENCE_PREFIX = "teamindex-"


class ExchangeError(Exception):
    """A refused exchange: `code` is PyPI's error code, str() the one-line description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


@dataclass(frozen=True)
class Minted:
    token_id: int
    secret: str
    expires: str
    user_name: str
    projects: tuple[str, ...]
    run: tuple[str, str, str, str]  # repository, workflow, ref, run id


def default_audience(instance_key: bytes) -> str:
    """This index's audience when none is configured: derived from the instance's secret
    key, so it is stable across restarts and differs between two teamindex instances (a
    token a CI asked for one is refused by the other), yet reveals nothing of the key."""
    digest = hmac.new(instance_key, b"teamindex oidc audience", hashlib.sha256).hexdigest()
    return AUDIENCE_PREFIX + digest[:16]


def exchange(
    db: Database, keys: KeyStore, audience: str, token: Any, now: datetime | None = None
) -> Minted:
    """Verify `token` and mint an upload token for the publishers it matches, or raise
    ExchangeError naming the failed check."""
    # PyJWT and cryptography load here, on the first exchange, not at every server start.
    from .verify import TokenError, unverified_issuer, verify

    now = now or datetime.now(timezone.utc)
    try:
        issuer, header = unverified_issuer(token)
        candidates = db.publishers_for_issuer(issuer)
        if not candidates:
            raise ExchangeError("invalid-publisher", f"no publisher is registered for {issuer}")
        key = keys.key(issuer, header.get("kid"))
        claims = verify(token, issuer, header, key, audience)
    except TokenError as exc:
        raise ExchangeError("invalid-token", f"{exc.check}: {exc}") from None
    except IssuerKeysError as exc:
        raise ExchangeError("invalid-token", f"keys: {exc}") from None
    publishers = _matching(candidates, claims)
    user = _registrar(db, publishers)
    for publisher in publishers:
        _check_project(db, publisher, user)
    expires = _expiry(claims, now)
    if not db.spend_jti(issuer, str(claims["jti"]), utc_stamp(expires), utc_stamp(now)):
        raise ExchangeError("invalid-token", "jti: this token was already exchanged (replay)")
    run = run_details(publishers[0].kind, claims)
    secret = new_token_secret()
    token_id = db.add_minted_token(
        publishers,
        token_digest(secret),
        expires=utc_stamp(expires),
        note=f"trusted publishing: {run[0]} {run[1]} {run[2]} run {run[3]}",
        run=run,
        now=utc_stamp(now),
    )
    projects = tuple(sorted({publisher.project for publisher in publishers}))
    return Minted(token_id, secret, utc_stamp(expires), user.name, projects, run)


def _matching(candidates: list[Publisher], claims: dict[str, Any]) -> list[Publisher]:
    misses: list[Mismatch] = []
    matched = []
    for publisher in candidates:
        miss = mismatch(publisher, claims)
        if miss is None:
            matched.append(publisher)
        else:
            misses.append(miss)
    if not matched:
        best = max(misses, key=lambda miss: miss.passed)
        raise ExchangeError("invalid-publisher", f"{best.check}: {best.reason}")
    return matched


def _registrar(db: Database, publishers: list[Publisher]) -> Any:
    """The one user whose rights the minted token narrows. Publishers registered by two
    users for one workflow would need two tokens: refused, and said how to fix it."""
    if len({publisher.user_id for publisher in publishers}) > 1:
        raise ExchangeError(
            "invalid-publisher",
            "publishers: this workflow matches publishers registered by different users;"
            " register them all by one owner",
        )
    user = db.get_user_by_id(publishers[0].user_id)
    if user is None:  # cascades delete the publisher with its user; a race at most
        raise ExchangeError("invalid-publisher", "publisher: its registering user is gone")
    return user


def _check_project(db: Database, publisher: Publisher, user: Any) -> None:
    """The registrar must still be allowed to upload there. A pending publisher's project
    must be missing, or created by the registrar's own first upload through it (they own
    it then): if someone else took the name meanwhile, the publisher must not upload to
    their project."""
    project, role = db.project_with_role(publisher.project, user.id)
    if publisher.pending and project is not None:
        if role != "owner":
            raise ExchangeError(
                "invalid-publisher",
                f"project: {publisher.project!r} was created by someone else after this"
                " pending publisher was registered",
            )
        db.bind_pending_publisher(publisher.id, project.id)
    if not publisher.pending and project is None:
        raise ExchangeError("invalid-publisher", f"project: {publisher.project!r} is gone")
    facts = ProjectFacts.of(publisher.project, project, role)
    if decide(Principal(user), Action.UPLOAD, facts) is not Decision.ALLOW:
        raise ExchangeError(
            "invalid-publisher",
            f"project: {user.name!r}, who registered this publisher, may no longer upload to"
            f" {publisher.project!r}",
        )


def _expiry(claims: dict[str, Any], now: datetime) -> datetime:
    """At most MAX_MINTED_SECONDS, and never past the CI token's own `exp`."""
    ci_expiry = datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
    expires = min(now + timedelta(seconds=MAX_MINTED_SECONDS), ci_expiry)
    if expires <= now:
        raise ExchangeError("invalid-token", "exp: the token has expired")
    return expires
