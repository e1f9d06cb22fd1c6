"""Client-address rules: CIDR allowlists and brute-force throttling. Pure: no Flask, no SQL."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: str) -> IPNetwork:
    """A CIDR or a single address (as /32 or /128); ValueError with a clear message."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {text!r}") from None


def ip_allowed(ip: str, cidrs: Iterable[str]) -> bool:
    """True when *ip* is inside one of *cidrs*; an empty list allows every address."""
    networks = [parse_cidr(cidr) for cidr in cidrs]
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True)
class ThrottlePolicy:
    """N failures within `window` seconds block for `cooldown` seconds.

    Defaults: a CI fan-out with correct credentials never fails, so it is never throttled;
    a mistyped password a few times is fine; a password-guessing loop is stopped quickly.
    """

    ip_failures: int = 20
    user_failures: int = 50
    window: float = 300.0
    cooldown: float = 300.0


class Throttle:
    """Counts failed authentications per client IP and per user name, in memory.

    A user-name block applies only to addresses that have not recently authenticated as that
    user, so a guessing attack on a name cannot lock its owner out of their usual machines.
    """

    def __init__(self, policy: ThrottlePolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._good: dict[tuple[str, str], float] = {}  # (user, ip) -> last success
        self._lock = threading.Lock()

    def retry_after(self, ip: str, user: str | None) -> int:
        """Seconds the client must wait, or 0 when it may try."""
        now = self.clock()
        keys = [f"ip:{ip}"]
        if user and self._good.get((user, ip), -math.inf) < now - self.policy.window * 12:
            keys.append(f"user:{user}")
        with self._lock:
            waits = [self._blocked_until.get(key, 0.0) - now for key in keys]
        wait = max(waits)
        return math.ceil(wait) if wait > 0 else 0

    def failure(self, ip: str, user: str | None) -> bool:
        """Record a failed attempt; True when it just caused a block."""
        blocked = self._count(f"ip:{ip}", self.policy.ip_failures)
        if user:
            blocked = self._count(f"user:{user}", self.policy.user_failures) or blocked
        return blocked

    def success(self, ip: str, user: str) -> None:
        with self._lock:
            self._good[(user, ip)] = self.clock()
            if len(self._good) > 100_000:  # bound memory under a flood of names
                self._good.clear()

    def _count(self, key: str, limit: int) -> bool:
        now = self.clock()
        with self._lock:
            window = self._failures.setdefault(key, deque())
            window.append(now)
            while window and window[0] < now - self.policy.window:
                window.popleft()
            if len(window) >= limit and self._blocked_until.get(key, 0.0) <= now:
                self._blocked_until[key] = now + self.policy.cooldown
                window.clear()
                return True
            if len(self._failures) > 100_000:
                self._failures.clear()
        return False
