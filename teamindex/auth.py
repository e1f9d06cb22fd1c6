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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from werkzeug.security import check_password_hash, generate_password_hash

from .models import User

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
    return generate_password_hash(password, method=method)


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
    return generate_password_hash(_DUMMY_PASSWORD)


# -- permissions -----------------------------------------------------------------------------


class Action(Enum):
    READ = "read"
    UPLOAD = "upload"


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user (or None for an anonymous reader)."""

    user: User | None

    @property
    def name(self) -> str:
        return self.user.name if self.user else "anonymous"


ANONYMOUS = Identity(None)
UPLOAD_ROLES = frozenset({"owner", "maintainer"})


def decide(identity: Identity, action: Action, *, project_exists: bool, role: str | None) -> bool:
    """The one permission rule every route asks.

    Reading needs an identity (anonymous only when the admin allowed it, which the caller
    expresses by passing ANONYMOUS at all). Uploading needs a user: admins always; to a new
    project anyone (they become its owner); to an existing one its owner or a maintainer.
    """
    if action is Action.READ:
        return True
    if identity.user is None:
        return False
    if identity.user.is_admin or not project_exists:
        return True
    return role in UPLOAD_ROLES
