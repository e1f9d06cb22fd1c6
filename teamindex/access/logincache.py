"""Logins this server verified recently, so hot reads skip the login query. No Flask here.

An entry is keyed by a keyed digest of the raw Authorization header and the client address
(no secret is kept; the key never leaves the process) and says who logged in and at which
auth serial. It answers only while that serial is current — a trigger bumps it on any change
to users, tokens or allowlists, also from the CLI in another process — and for at most
`ttl` seconds, never past the token's expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .permissions import Principal


@dataclass(frozen=True)
class VerifiedLogin:
    principal: Principal
    username: str  # as sent (`__token__` for tokens)
    auth_serial: int
    valid_until: float  # wall clock (time.time), so a token's expiry can cap it


class LoginCache:
    """LRU of verified logins by (Authorization header, client address)."""

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, VerifiedLogin] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, authorization: str, ip: str) -> bytes:
        message = f"{authorization}\0{ip}".encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def remember(
        self, authorization: str, ip: str, username: str, principal: Principal, auth_serial: int
    ) -> None:
        """Record a login that passed every check (allowlists, throttle, credentials)."""
        if self.ttl <= 0:
            return
        valid_until = self.clock() + self.ttl
        token = principal.token
        if token is not None and token.expires is not None:
            expires = datetime.fromisoformat(token.expires.replace("Z", "+00:00"))
            valid_until = min(valid_until, expires.timestamp())
        entry = VerifiedLogin(principal, username, auth_serial, valid_until)
        digest = self._digest(authorization, ip)
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def lookup(self, authorization: str, ip: str) -> VerifiedLogin | None:
        """The unexpired login for this header and address; the caller must still compare
        its auth_serial with the database's (read in the same statement as its other facts)."""
        if self.ttl <= 0:
            return None
        digest = self._digest(authorization, ip)
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry.valid_until <= self.clock():
            return None
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
