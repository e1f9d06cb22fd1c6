"""teamindex.access.auth (pure parts): user names, passwords, the verified-credential cache; and the
upload/read basics of permissions.decide. Tokens and the full matrix live in test_access*."""

from __future__ import annotations

import pytest
from conftest import FAST_HASH
from werkzeug.security import check_password_hash

from teamindex.access import auth
from teamindex.access.auth import (
    AuthError,
    CredentialCache,
    hash_password,
    validate_password,
    validate_username,
)
from teamindex.access.permissions import (
    ANONYMOUS,
    Action,
    Decision,
    Principal,
    ProjectFacts,
    decide,
)
from teamindex.models import User

PASSWORD = "correct-horse"


@pytest.mark.parametrize("name", ["alice", "a", "ci-bot", "first.last", "x_y", "me@corp", "A1"])
def test_valid_usernames(name):
    assert validate_username(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "1 to 64 characters"),
        ("x" * 65, "1 to 64 characters"),
        ("__token__", "reserved for API tokens"),
        ("a:b", "may contain only"),  # Basic auth splits on the first ':'
        ("a b", "may contain only"),
        ("a/b", "may contain only"),
        ("a\nb", "may contain only"),
        ("<script>", "may contain only"),
    ],
)
def test_invalid_usernames(name, message):
    with pytest.raises(AuthError, match=message):
        validate_username(name)


@pytest.mark.parametrize("password", ["12345678", "correct horse battery", "p:ss:word", "ünïcödé!"])
def test_valid_passwords(password):
    assert validate_password(password) == password


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "at least 8 characters"),
        ("1234567", "at least 8 characters"),
        ("long enough\n", "single line"),
        ("long\renough", "single line"),
    ],
)
def test_invalid_passwords(password, message):
    with pytest.raises(AuthError, match=message):
        validate_password(password)


@pytest.mark.parametrize("method", [FAST_HASH, "scrypt"])
def test_hash_password_uses_the_method_and_verifies(method):
    stored = hash_password(PASSWORD, method)
    assert stored.startswith(method.split(":")[0] + ":")
    assert PASSWORD not in stored
    assert check_password_hash(stored, PASSWORD)
    assert not check_password_hash(stored, PASSWORD + "x")
    assert hash_password(PASSWORD, method) != stored  # salted


# -- the credential cache ---------------------------------------------------------------------


def user(password: str = PASSWORD, name: str = "alice", user_id: int = 1) -> User:
    return User(user_id, name, hash_password(password, FAST_HASH), False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """Records every real (slow) password hash check the cache makes."""
    calls: list[str] = []

    def counting(stored: str, password: str) -> bool:
        calls.append(password)
        return check_password_hash(stored, password)

    monkeypatch.setattr(auth, "check_password_hash", counting)
    return calls


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth.time, "monotonic", fake)
    return fake


def test_cache_answers_repeat_checks_without_hashing(checks, clock):
    cache, alice = CredentialCache(300), user()
    assert cache.verify(alice, PASSWORD) is True
    assert cache.verify(alice, PASSWORD) is True
    assert cache.verify(alice, PASSWORD) is True
    assert checks == [PASSWORD]


def test_wrong_password_is_never_cached(checks, clock):
    cache, alice = CredentialCache(300), user()
    assert cache.verify(alice, "wrong-password") is False
    assert cache.verify(alice, "wrong-password") is False
    assert checks == ["wrong-password", "wrong-password"]
    assert cache.verify(alice, PASSWORD) is True


def test_cached_entry_expires_after_ttl(checks, clock):
    cache, alice = CredentialCache(300), user()
    assert cache.verify(alice, PASSWORD)
    clock.now += 299
    assert cache.verify(alice, PASSWORD)
    assert len(checks) == 1
    clock.now += 2
    assert cache.verify(alice, PASSWORD)
    assert len(checks) == 2


def test_changed_password_hash_invalidates_cached_logins(checks, clock):
    cache, old = CredentialCache(300), user(PASSWORD)
    assert cache.verify(old, PASSWORD)
    new = User(old.id, old.name, hash_password("new-password!", FAST_HASH), False)
    assert cache.verify(new, PASSWORD) is False  # the old password no longer works at once
    assert cache.verify(new, "new-password!") is True
    assert checks == [PASSWORD, PASSWORD, "new-password!"]


def test_cache_entry_is_per_user(checks, clock):
    cache = CredentialCache(300)
    alice, bob = user(name="alice"), user(name="bob", user_id=2)
    assert cache.verify(alice, PASSWORD)
    # Same password, other user with its own hash: checked, not answered from alice's entry.
    assert cache.verify(bob, PASSWORD)
    impostor = User(3, "mallory", alice.password_hash, False)
    assert cache.verify(impostor, PASSWORD)
    assert len(checks) == 3


def test_ttl_zero_disables_cache(checks, clock):
    cache, alice = CredentialCache(0), user()
    for _ in range(3):
        assert cache.verify(alice, PASSWORD)
    assert len(checks) == 3


def test_unknown_user_is_false_and_costs_a_hash(checks, clock):
    cache = CredentialCache(300)
    assert cache.verify(None, PASSWORD) is False
    assert cache.verify(None, PASSWORD) is False
    assert checks == [PASSWORD, PASSWORD]  # timing equalized, never cached


def test_cache_is_bounded_lru(checks, clock):
    cache = CredentialCache(300, max_entries=2)
    users = [user(name=f"u{n}", user_id=n) for n in range(3)]
    for member in users:
        assert cache.verify(member, PASSWORD)
    assert len(checks) == 3
    assert cache.verify(users[2], PASSWORD)  # newest: cached
    assert cache.verify(users[1], PASSWORD)
    assert len(checks) == 3
    assert cache.verify(users[0], PASSWORD)  # evicted: checked again
    assert len(checks) == 4


def test_clear_forgets_everything(checks, clock):
    cache, alice = CredentialCache(300), user()
    assert cache.verify(alice, PASSWORD)
    cache.clear()
    assert cache.verify(alice, PASSWORD)
    assert len(checks) == 2


def test_cache_keeps_no_plaintext(clock):
    cache, alice = CredentialCache(300), user()
    assert cache.verify(alice, PASSWORD)
    keys = list(cache._entries)
    assert len(keys) == 1
    assert PASSWORD.encode() not in keys[0]
    assert len(keys[0]) == 32  # an HMAC-SHA256 digest
    # A different process (another key) cannot recompute the entry.
    assert CredentialCache(300)._digest(alice, PASSWORD) != keys[0]


# -- decide: the read/upload basics ---------------------------------------------------------

ALICE = Principal(User(1, "alice", "x", False))
ROOT = Principal(User(2, "root", "x", True))
NEW = ProjectFacts("foo", exists=False)


def existing(role: str | None) -> ProjectFacts:
    return ProjectFacts("foo", exists=True, role=role)


@pytest.mark.parametrize(
    ("principal", "action", "facts", "decision"),
    [
        (ALICE, Action.UPLOAD, NEW, Decision.ALLOW),  # first uploader creates and owns
        (ANONYMOUS, Action.UPLOAD, NEW, Decision.DENY),
        (ANONYMOUS, Action.UPLOAD, existing(None), Decision.DENY),
        (ALICE, Action.UPLOAD, existing("owner"), Decision.ALLOW),
        (ALICE, Action.UPLOAD, existing("maintainer"), Decision.ALLOW),
        (ALICE, Action.UPLOAD, existing("reader"), Decision.DENY),
        (ALICE, Action.UPLOAD, existing(None), Decision.DENY),
        (ROOT, Action.UPLOAD, existing(None), Decision.ALLOW),  # admins upload anywhere
        (ALICE, Action.READ, existing(None), Decision.ALLOW),
        (ANONYMOUS, Action.READ, existing(None), Decision.ALLOW),  # when anonymous_read
        (ALICE, Action.READ, NEW, Decision.HIDE),  # a missing project is a 404
    ],
)
def test_decide_read_and_upload(principal, action, facts, decision):
    assert decide(principal, action, facts) is decision
