"""KeyedLocks: one lock per key while in use, and nothing kept for a key nobody uses."""

from __future__ import annotations

import threading
import time

from teamindex.upstream.keyedlocks import KeyedLocks


def test_one_holder_per_key_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    assert locks.acquire("six", 1)
    assert not locks.acquire("six", 0.05)  # the same key waits, bounded
    assert locks.acquire("attrs", 0.05)  # another key does not
    locks.release("attrs")
    locks.release("six")
    assert len(locks) == 0


def test_a_waiter_gets_the_lock_when_the_holder_lets_go() -> None:
    locks = KeyedLocks()
    assert locks.acquire("six", 1)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire("six", 5)))
    waiter.start()
    time.sleep(0.05)
    assert len(locks) == 1  # one entry for holder and waiter
    locks.release("six")
    waiter.join(5)
    assert got == [True]
    locks.release("six")
    assert len(locks) == 0


def test_many_names_leave_nothing_behind() -> None:
    """What a client asking for a million made-up names would have grown before."""
    locks = KeyedLocks()
    names = [f"name-{n}" for n in range(2_000)]

    def churn(part: list[str]) -> None:
        for name in part:
            assert locks.acquire(name, 5)
            locks.release(name)

    threads = [threading.Thread(target=churn, args=(names[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(locks) == 0
    timed_out = locks.acquire("x", 1), locks.acquire("x", 0.01)
    assert timed_out == (True, False)
    locks.release("x")
    assert len(locks) == 0  # a waiter that gave up leaves no entry either
