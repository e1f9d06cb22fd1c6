"""loading.py: while `serve` loads Flask on its thread, lazy imports of the web stack from
other threads wait for it (two threads importing werkzeug at once got each other's
half-built modules: an ImportError, a 503, in about one start in ten)."""

from __future__ import annotations

import threading
import time

from teamindex import loading


def test_nobody_waits_when_nothing_is_loading() -> None:
    started = time.monotonic()
    loading.wait(timeout=5)
    assert time.monotonic() - started < 1


def test_others_wait_for_the_loading_thread_which_never_waits_for_itself() -> None:
    events: list[str] = []
    go = threading.Event()

    def load() -> None:
        assert go.wait(10)
        loading.wait(timeout=5)  # its own lazy imports: no wait
        events.append("loaded")
        loading.end()

    loader = threading.Thread(target=load)
    loading.begin(loader)
    try:
        loader.start()
        waiter = threading.Thread(target=lambda: (loading.wait(timeout=10), events.append("ran")))
        waiter.start()
        time.sleep(0.2)
        assert events == []  # the request waits
        go.set()
        loader.join(10)
        waiter.join(10)
        assert events == ["loaded", "ran"]
    finally:
        loading.end()
