"""Passwords, the verified-credential cache and permission decisions. No Flask here.

A password hash (scrypt) costs tens of milliseconds by design, which would cap an index at a
few authenticated requests per second per core (devpi spends ~120 ms per request on it).
So a successful check is remembered for a short time as a keyed digest of
(user, password, stored hash): no plaintext is kept, and changing the password changes the
stored hash, which makes every remembered entry for the old one unreachable at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from .. import loading
from ..clock import parse_moment, utc_stamp
from ..models import User

MIN_PASSWORD_LENGTH = 8
USERNAME_MAX = 64
# A fixed hash to check against when the user does not exist, so that an unknown user
# costs the same time as a wrong password (no user-enumeration by timing).
_DUMMY_PASSWORD = "not-a-real-password"  # noqa: S105 - compared against, never accepted


class AuthError(ValueError):
    """A user or password that cannot be accepted; str() is the reason."""


def validate_username(name: str) -> str:
    """Usernames are short, printable and free of ':' (Basic auth splits on the first ':')."""
    if not name or len(name) > USERNAME_MAX:
        raise AuthError(f"user name must be 1 to {USERNAME_MAX} characters")
    if name == "__token__":
        raise AuthError("'__token__' is reserved for API tokens")
    if not all(c.isalnum() or c in "._-@" for c in name):
        raise AuthError("user name may contain only letters, digits and . _ - @")
    return name


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if "\n" in password or "\r" in password:
        raise AuthError("password must be a single line")
    return password


def hash_password(password: str, method: str) -> str:
    loading.wait()
    from werkzeug.security import generate_password_hash  # see check_password_hash

    return generate_password_hash(password, method=method)


def check_password_hash(stored: str, password: str) -> bool:
    """werkzeug's check, imported on the first password check: importing werkzeug costs
    ~45 ms, and a token login or an anonymous first request must not pay it (issue 14)."""
    loading.wait()
    from werkzeug.security import check_password_hash as check

    return check(stored, password)


class CredentialCache:
    """Remembers recently verified (user, password, stored-hash) triples by keyed digest."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._key = os.urandom(32)  # per process: digests are useless outside it
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, user: User, password: str) -> bytes:
        message = "\0".join((user.name, password, user.password_hash)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, user: User | None, password: str) -> bool:
        """Constant-time password check, answered from the cache when recently verified."""
        if user is None:
            check_password_hash(_dummy_hash(), password)  # equalize timing
            return False
        if self.ttl <= 0:
            return check_password_hash(user.password_hash, password)
        digest = self._digest(user, password)
        now = time.monotonic()
        with self._lock:
            expires = self._entries.get(digest)
            if expires is not None and expires > now:
                return True
        if not check_password_hash(user.password_hash, password):
            return False
        with self._lock:
            self._entries[digest] = now + self.ttl
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@functools.cache
def _dummy_hash() -> str:
    loading.wait()
    from werkzeug.security import generate_password_hash  # see check_password_hash

    return generate_password_hash(_DUMMY_PASSWORD)


class UsageRecorder:
    """Writes a token's last-used time and address at most every `interval` seconds, so a
    busy CI token does not turn every read into a database write."""

    def __init__(self, write: Callable[[int, str, str], None], interval: float = 60.0) -> None:
        self.write = write
        self.interval = interval
        self._last: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def due(self, token_id: int, ip: str) -> bool:
        """Whether touch() would write now (it may still not, if another thread just did)."""
        last = self._last.get(token_id)
        return last is None or last[1] != ip or time.monotonic() - last[0] >= self.interval

    def touch(self, token_id: int, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(token_id)
            if last is not None and last[1] == ip and now - last[0] < self.interval:
                return
            self._last[token_id] = (now, ip)
        self.write(token_id, utc_stamp(), ip)


# -- API tokens ----------------------------------------------------------------------------

TOKEN_PREFIX = "tix_"  # noqa: S105 - recognisable, so secret scanners can flag a leaked token
TOKEN_USERNAME = "__token__"  # noqa: S105 - PyPI convention: twine, poetry, uv and pdm send this name


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_token(password: str) -> bool:
    return password.startswith(TOKEN_PREFIX)


def token_digest(secret: str) -> str:
    """Secrets carry 256 random bits, so a plain fast digest is enough to store and look up
    (no slow hash needed, unlike passwords chosen by people)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_expiry(text: str, now: datetime) -> str | None:
    """'90d', '12h', an ISO date or datetime, or 'never' -> UTC timestamp string or None."""
    if text.strip().lower() == "never":
        return None
    when = parse_moment(text, now, future=True)
    if when is None:
        raise AuthError(f"expiry must be like 90d, 2027-01-31 or never, not {text!r}")
    if when <= now:
        raise AuthError("expiry is in the past")
    return utc_stamp(when)


def token_expired(expires: str | None, now: datetime) -> bool:
    if expires is None:
        return False
    return datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now
