"""One thread at a time imports the web stack (Flask, werkzeug) while `serve` starts.

`serve` answers its first requests before Flask is loaded, and loads it on a thread of its
own (boot.py, issue 14). A request that needs a module of that stack meanwhile (werkzeug
for a password check or an unusual header, say) must not import it at the same moment: two
threads importing a package with import cycles can each be handed the other's half-built
module (ImportError: "partially initialized module"). Such a request waits here until the
loading is over. Outside `serve` (create_app, the CLI) nothing is loading: nobody waits.
"""

from __future__ import annotations

import threading

_idle = threading.Event()
_idle.set()
_loader: list[threading.Thread] = []  # the loading thread, while one runs


def begin(loader: threading.Thread) -> None:
    """`loader` is about to load the web stack: call it before starting that thread."""
    _loader[:] = [loader]
    _idle.clear()


def end() -> None:
    """The loading is over (done or failed)."""
    _loader.clear()
    _idle.set()


def wait(timeout: float = 60.0) -> None:
    """Return once no other thread is loading the web stack (at most `timeout` seconds:
    past that, importing anyway beats answering nothing). Call it before a lazy import
    of werkzeug or Flask on a request's path."""
    if _idle.is_set() or _loader == [threading.current_thread()]:
        return
    _idle.wait(timeout)
