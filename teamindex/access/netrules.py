"""Client-address rules: CIDR allowlists and brute-force throttling. No Flask, no SQL: the
throttle's counts live behind ThrottleStore (the database)."""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from ..clock import utc_stamp
from ..db.core import Busy, database_errors
from ..models import ThrottleEntry, ThrottleState

log = logging.getLogger("teamindex")

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

    @property
    def known_for(self) -> float:
        """How long a successful login keeps its address exempt from blocks on the name."""
        return self.window * 12


def address_key(ip: str) -> str:
    """The throttle's key for a client address. IPv4 as it is; IPv4-mapped IPv6
    (::ffff:10.0.0.1) as the IPv4 address; other IPv6 as its /64, the usual allocation of
    one subscriber (RFC 6177), so walking through the addresses of one network does not
    reset the count. Anything unparsable stays as it is (still one key per value)."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def user_key(sent: str, stored: str | None) -> str:
    """The throttle's key for a user name: the name as stored when the login found a user
    (names are COLLATE NOCASE, so `dave`, `Dave` and `DAVE` are the one stored `dave`),
    else the name as sent, casefolded, so unknown names are counted the same way and a
    block does not reveal whether a name exists."""
    return stored if stored is not None else sent.casefold()


def normalize_address(text: str) -> str:
    """An address or an IPv6 /64 as an administrator types it, as a throttle key;
    ValueError for anything else."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if network.version == 6 and network.prefixlen == 64:
        return str(network)
    if network.num_addresses != 1:
        raise ValueError(f"not an IP address or IPv6 /64: {text!r}")
    return address_key(str(network.network_address))


class ThrottleStore(Protocol):
    """Where the throttle keeps its counts (teamindex.db.Database)."""

    def throttle_state(self, address: str, user: str | None) -> ThrottleState: ...

    def add_throttle_failures(
        self,
        address: str | None,
        address_limit: int,
        user: str | None,
        user_limit: int,
        *,
        now: float,
        window: float,
        cooldown: float,
    ) -> list[tuple[str, str]]: ...

    def add_known_address(self, user: str, address: str, now: float) -> None: ...

    def prune_throttle(self, *, now: float, window: float, known_for: float) -> int: ...


class Throttle:
    """Counts failed logins per client address and per user name, in the database, so the
    counts survive a restart and every worker process shares them.

    Password failures count against the address and the user name. Token failures count
    against the address only: a 256-bit secret cannot be guessed, and all tokens share the
    name `__token__`, so counting that name would let anyone lock every CI job out.
    A block on a user name does not apply to addresses the user logged in from recently,
    so guessing a colleague's password cannot lock them out of their usual machines.
    Successful logins are written at most every `success_interval` seconds per (user,
    address), so a busy reader does not turn every request into a database write.
    """

    def __init__(
        self,
        policy: ThrottlePolicy,
        store: ThrottleStore,
        clock: Callable[[], float] = time.time,
        success_interval: float = 60.0,
    ) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock  # wall clock: the database is shared across processes and restarts
        self.success_interval = success_interval
        self._written: dict[tuple[str, str], float] = {}  # (user, ip) -> last write
        self._pruned = -math.inf
        self._lock = threading.Lock()

    def retry_after(self, ip: str, user: str | None) -> int:
        """Seconds the client must wait before its credentials are checked, or 0. `user` is
        the user_key() of a password login, None for a token."""
        now = self.clock()
        state = self.store.throttle_state(address_key(ip), user)
        wait = state.address_blocked_until - now
        known = state.user_seen_here is not None and (
            state.user_seen_here > now - self.policy.known_for
        )
        if user is not None and not known:
            wait = max(wait, state.user_blocked_until - now)
        return math.ceil(wait) if wait > 0 else 0

    def failure(
        self, ip: str, user: str | None, *, count_address: bool = True
    ) -> list[tuple[str, str]]:
        """Count a failed login; the (kind, subject) keys it just blocked. Best effort: a
        database that cannot take the write now (locked, full) loses this count rather
        than failing the request. `count_address=False` counts the user key only (a
        password sent from outside the user's own list: see httpauth.authenticate)."""
        now = self.clock()
        policy = self.policy
        try:
            blocked = self.store.add_throttle_failures(
                address_key(ip) if count_address else None,
                policy.ip_failures,
                user,
                policy.user_failures,
                now=now,
                window=policy.window,
                cooldown=policy.cooldown,
            )
        except (*database_errors(), OSError, Busy) as exc:
            log.warning("throttle: a failed login from %s was not counted: %s", ip, exc)
            return []
        self._prune(now)
        return blocked

    def success_due(self, ip: str, user: str) -> bool:
        """Whether success() would write now (it may still not, if another thread just did)."""
        last = self._written.get((user, ip))
        return last is None or self.clock() - last >= self.success_interval

    def success(self, ip: str, user: str) -> None:
        """Remember that `user` (the stored name) logged in from `ip`, at most every
        success_interval seconds per pair; best effort like failure()."""
        now = self.clock()
        with self._lock:
            last = self._written.get((user, ip))
            if last is not None and now - last < self.success_interval:
                return
            if len(self._written) > 100_000:  # bound memory under a flood of addresses
                self._written.clear()
            self._written[(user, ip)] = now
        try:
            self.store.add_known_address(user, address_key(ip), now)
        except (*database_errors(), OSError, Busy) as exc:
            log.warning("throttle: a login of %s from %s was not recorded: %s", user, ip, exc)
            return
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop expired rows, at most once per window (bounded table growth)."""
        with self._lock:
            if now - self._pruned < self.policy.window:
                return
            self._pruned = now
        try:
            self.store.prune_throttle(
                now=now, window=self.policy.window, known_for=self.policy.known_for
            )
        except (*database_errors(), OSError, Busy) as exc:
            log.warning("throttle: pruning skipped: %s", exc)


def throttle_view(entry: ThrottleEntry, now: float) -> dict[str, Any]:
    """One throttle key as `throttle list --json` and /admin/throttle show it."""
    blocked = entry.blocked_until > now
    return {
        "kind": entry.kind,
        "subject": entry.subject,
        "failures": entry.failures,
        "max_failures": entry.max_failures,
        "window_start": _stamp(entry.window_start),
        "blocked_until": _stamp(entry.blocked_until) if blocked else None,
        "retry_after": math.ceil(entry.blocked_until - now) if blocked else 0,
    }


def _stamp(seconds: float) -> str:
    return utc_stamp(datetime.fromtimestamp(seconds, timezone.utc))
