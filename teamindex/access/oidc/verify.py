"""Verify a CI's OIDC token with PyJWT: signature, issuer, audience, times, token id.

Never by hand: PyJWT checks the signature with the issuer's key and the times with a small
leeway. What it cannot know is ours: only RS256 and ES256 (GitHub and GitLab sign with
RS256; an `alg: none` or an HMAC token "signed" with the public key never gets to a key),
and the key's type must be the algorithm's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from .keys import IssuerKeysError, Jwk

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
LEEWAY_SECONDS = 30  # clock skew between the CI's issuer and this server
MAX_TOKEN_LENGTH = 16 << 10


class TokenError(ValueError):
    """A token that is refused; `check` names the failed check, str() the reason."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(reason)
        self.check = check


def unverified_issuer(token: str) -> tuple[str, dict[str, Any]]:
    """The token's `iss` and header, read before anything is trusted: the issuer says
    whose keys to check it with, and which publishers could match."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("format", "the token is not a JWT")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("format", f"the token is not a JWT: {exc}") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise TokenError("iss", "the token names no issuer")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise TokenError("alg", f"algorithm {alg!r} is refused (only RS256 and ES256)")
    return issuer.rstrip("/"), header


def verify(token: str, issuer: str, header: Mapping[str, Any], key: Jwk, audience: str) -> dict:
    """The token's claims once signature, iss, aud, exp, nbf and iat hold; jti must be there
    (its single use is the caller's, in the database)."""
    alg = str(header.get("alg"))
    if key.get("kty") != ALGORITHMS.get(alg) or key.get("alg", alg) != alg:
        raise TokenError("alg", f"algorithm {alg} does not fit the issuer's key")
    try:
        public_key = jwt.PyJWK(dict(key), algorithm=alg).key
        return jwt.decode(
            token,
            public_key,
            algorithms=[alg],
            audience=audience,
            issuer=[issuer, issuer + "/"],
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("exp", "the token has expired") from None
    except jwt.ImmatureSignatureError as exc:
        raise TokenError("nbf", f"the token is not yet valid ({exc})") from None
    except jwt.InvalidAudienceError:
        raise TokenError(
            "aud", f"the token's audience is not this index's ({audience!r})"
        ) from None
    except jwt.InvalidIssuerError:
        raise TokenError("iss", "the token's issuer does not match") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(exc.claim, f"the token has no {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise TokenError("signature", "the token's signature does not verify") from None
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise TokenError("token", f"the token is invalid: {exc}") from None


__all__ = ["ALGORITHMS", "IssuerKeysError", "TokenError", "unverified_issuer", "verify"]
