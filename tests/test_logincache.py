"""LoginCache: verified logins by (Authorization header, address), bounded in time and size."""

from __future__ import annotations

import pytest

from teamindex.access.logincache import LoginCache
from teamindex.access.permissions import Principal
from teamindex.models import Token, User

ALICE = Principal(User(1, "alice", "hash", False))
HEADER = "Basic YWxpY2U6cGFzc3dvcmQ="


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def token(expires: str | None) -> Token:
    return Token(
        id=7,
        user_id=1,
        scope="read",
        projects=(),
        allow_ips=(),
        note="",
        created="2027-01-01T00:00:00Z",
        expires=expires,
        revoked=None,
        last_used=None,
        last_ip=None,
        user_name="alice",
    )


def test_remembers_per_header_and_address():
    cache = LoginCache(60)
    cache.remember(HEADER, "10.0.0.1", "alice", ALICE, auth_serial=4)
    entry = cache.lookup(HEADER, "10.0.0.1")
    assert entry is not None
    assert (entry.principal, entry.username, entry.auth_serial) == (ALICE, "alice", 4)
    assert cache.lookup(HEADER, "10.0.0.2") is None
    assert cache.lookup(HEADER + "x", "10.0.0.1") is None


@pytest.mark.parametrize(
    ("ttl", "principal", "lifetime"),
    [
        (60, ALICE, 60),
        # The clock starts at 2027-01-15T08:00:00Z: the token's expiry caps a one-hour ttl.
        (3600, Principal(ALICE.user, token("2027-01-15T08:00:10Z")), 10),
    ],
)
def test_entries_live_until_the_ttl_or_the_token_expires(ttl, principal, lifetime):
    clock = Clock()
    cache = LoginCache(ttl, clock=clock)
    cache.remember(HEADER, "ip", "alice", principal, 1)
    clock.now += lifetime - 1
    assert cache.lookup(HEADER, "ip") is not None
    clock.now += 1
    assert cache.lookup(HEADER, "ip") is None


def test_zero_ttl_disables_the_cache():
    cache = LoginCache(0)
    cache.remember(HEADER, "ip", "alice", ALICE, 1)
    assert cache.lookup(HEADER, "ip") is None


def test_size_is_bounded_least_recent_first():
    cache = LoginCache(60, max_entries=2)
    for n in range(3):
        cache.remember(f"Basic {n}", "ip", "alice", ALICE, 1)
    assert cache.lookup("Basic 0", "ip") is None
    assert cache.lookup("Basic 1", "ip") is not None
    assert cache.lookup("Basic 2", "ip") is not None


def test_no_secret_is_kept():
    cache = LoginCache(60)
    cache.remember(HEADER, "ip", "alice", ALICE, 1)
    assert all(HEADER.encode() not in key for key in cache._entries)
