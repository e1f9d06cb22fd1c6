"""Issuers' signing keys: JWKS found through OpenID discovery, cached, refreshed on an
unknown key id at most once a minute; or a static JWKS file for installs without internet.

Only issuers an admin registered a publisher for are ever contacted (the exchange looks the
issuer up first), so a token cannot make the server fetch a URL of its choosing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .claims import PublisherError, check_issuer

if TYPE_CHECKING:
    import urllib3

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_DOCUMENT = 1 << 20  # an OpenID configuration or JWKS is a few KB
KEYS_TTL = 3600.0  # keys are re-read hourly even when every kid is known
REFRESH_INTERVAL = 60.0  # an unknown kid re-reads the JWKS at most this often per issuer


class IssuerKeysError(Exception):
    """The issuer's keys could not be had; str() says why (one line)."""


Jwk = Mapping[str, Any]


class KeyStore:
    """Signing keys per issuer; thread-safe; one fetch per issuer at a time."""

    def __init__(self, ca_file: Path | None = None, static_file: Path | None = None) -> None:
        self._ca_file = ca_file
        self._pool: urllib3.PoolManager | None = None  # made on the first fetch
        self._static = _load_static(static_file) if static_file else {}
        self._cache: dict[str, tuple[float, dict[str, Jwk]]] = {}
        self._last_fetch: dict[str, float] = {}
        self._lock = threading.Lock()

    def key(self, issuer: str, kid: str | None) -> Jwk:
        """The JWK with this kid (or the only key when the token names none)."""
        if issuer in self._static:
            return _pick(self._static[issuer], kid, issuer)
        with self._lock:
            now = time.monotonic()
            cached = self._cache.get(issuer)
            fresh = cached is not None and now - cached[0] < KEYS_TTL
            known = cached is not None and (kid in cached[1] if kid else len(cached[1]) == 1)
            may_fetch = now - self._last_fetch.get(issuer, -REFRESH_INTERVAL) >= REFRESH_INTERVAL
            if not (fresh and known) and (may_fetch or cached is None):
                self._last_fetch[issuer] = now
                cached = (now, self._fetch(issuer))
                self._cache[issuer] = cached
        if cached is None:
            raise IssuerKeysError(f"no keys for issuer {issuer}")
        return _pick(cached[1], kid, issuer)

    def _fetch(self, issuer: str) -> dict[str, Jwk]:
        config = self._get_json(issuer + "/.well-known/openid-configuration")
        # OpenID Connect Discovery 1.0, 4.3: the document's issuer must be the one asked.
        if config.get("issuer", "").rstrip("/") != issuer:
            raise IssuerKeysError(f"{issuer}'s OpenID configuration names another issuer")
        try:
            jwks_uri = check_issuer(str(config.get("jwks_uri", "")))
        except PublisherError:
            raise IssuerKeysError(f"{issuer}'s jwks_uri is not an https URL") from None
        return _keys_by_kid(self._get_json(jwks_uri), issuer)

    def _pool_manager(self) -> urllib3.PoolManager:
        """The HTTP pool, made on first use: most servers never register a publisher, and
        urllib3 is left out of the server's cold start (tests/test_coldstart.py)."""
        import urllib3

        if self._pool is None:
            self._pool = urllib3.PoolManager(
                cert_reqs="CERT_REQUIRED",
                ca_certs=str(self._ca_file) if self._ca_file else None,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                retries=urllib3.Retry(total=0, redirect=0, raise_on_redirect=True),
            )
        return self._pool

    def _get_json(self, url: str) -> dict[str, Any]:
        from urllib3.exceptions import HTTPError

        try:
            response = self._pool_manager().request(
                "GET", url, headers={"Accept": "application/json"}, preload_content=False
            )
            try:
                body = response.read(MAX_DOCUMENT + 1)
            finally:
                response.release_conn()
        except HTTPError as exc:
            raise IssuerKeysError(f"cannot fetch {url}: {type(exc).__name__}") from None
        if response.status != 200 or len(body) > MAX_DOCUMENT:
            raise IssuerKeysError(f"cannot fetch {url}: HTTP {response.status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise IssuerKeysError(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise IssuerKeysError(f"{url} is not a JSON object")
        return document


def _keys_by_kid(jwks: Mapping[str, Any], issuer: str) -> dict[str, Jwk]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise IssuerKeysError(f"{issuer}'s JWKS has no keys")
    return {str(key.get("kid", "")): key for key in keys if isinstance(key, dict)}


def _pick(keys: dict[str, Jwk], kid: str | None, issuer: str) -> Jwk:
    if kid is None:
        if len(keys) == 1:
            return next(iter(keys.values()))
        raise IssuerKeysError(f"the token names no key id and {issuer} has {len(keys)} keys")
    try:
        return keys[kid]
    except KeyError:
        raise IssuerKeysError(f"{issuer} has no key {kid!r}") from None


def _load_static(path: Path) -> dict[str, dict[str, Jwk]]:
    """`{"https://issuer": {"keys": [...]}, ...}`: each issuer's JWKS, copied by the admin
    from its jwks_uri. Read at start-up, so a broken file stops the server, not a release."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--oidc-jwks-file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"--oidc-jwks-file {path}: expected {{issuer: JWKS}}")
    return {
        str(issuer).rstrip("/"): _keys_by_kid(jwks, issuer) for issuer, jwks in document.items()
    }
