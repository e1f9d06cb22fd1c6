"""What the server may decide about a request's credentials from its headers alone, before
it reads a large body (ops/serving.BodyGate). No Flask here.

It runs on waitress' socket thread, which serves every connection, so it does no password
hashing: at most one indexed read of the database per request. What it refuses would fail
in the app anyway; the app answers those requests with its usual words and audit.

- Not a well-formed Basic header (`Authorization: x`, another scheme, no password): 401.
- Token-shaped credentials (user `__token__` or a `tix_` secret): 401 unless the secret's
  digest names a token that is neither revoked nor expired.
- A password: read when this server verified the same header from this client address
  recently (LoginCache), else only while the throttle does not block the address (429).

Residual risk: a password cannot be checked here, so a first upload with an unverified
(possibly wrong) password still has its body read before its 401. The throttle bounds
that: an address gets `ip_failures` such bodies per window, then 429 on the headers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from ..headers import basic_credentials  # httpauth imports it from here
from .auth import TOKEN_USERNAME, looks_like_token, token_digest, token_expired
from .logincache import LoginCache
from .netrules import Throttle

# (revoked, expires) of the live token with a digest, or None: db.token_standing.
TokenStanding = Callable[[str], tuple[str | None, str | None] | None]


class EarlyCredentials:
    """The credential checks of BodyGate (see the module docstring)."""

    def __init__(self, tokens: TokenStanding, throttle: Throttle, logins: LoginCache) -> None:
        self.tokens = tokens
        self.throttle = throttle
        self.logins = logins

    def refusal(self, client: str, authorization: str) -> int:
        """401, 429, or 0 to read the body and let the app decide."""
        parsed = basic_credentials(authorization)
        if parsed is None:
            return 401
        username, password = parsed
        if username == TOKEN_USERNAME or looks_like_token(password):
            return 0 if self._token_usable(password) else 401
        if self.logins.lookup(authorization, client) is not None:
            return 0
        return 429 if self.throttle.retry_after(client, None) else 0

    def _token_usable(self, secret: str) -> bool:
        standing = self.tokens(token_digest(secret))
        if standing is None:
            return False
        revoked, expires = standing
        return revoked is None and not token_expired(expires, datetime.now(timezone.utc))
