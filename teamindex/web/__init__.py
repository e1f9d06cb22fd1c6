"""The browser side of teamindex: server-rendered pages and hosted documentation.

`init_app` sets up sessions and puts `LazyPages` in front of the app; the first request
for a page registers the `web` blueprint (login, project list and pages, account, admin)
and the `docs` blueprint (web/routes.py). The simple API and uploads are untouched by it:
they keep Basic auth only. Downloads also accept the session when no credentials are sent
(the project pages link to them); no cookie is ever set outside the web pages.

Why lazily (issue 14, cold start): importing the pages' modules and registering their ~30
routes cost ~35 ms of every start, and a CI runner's first request is an install.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, ServiceUnavailable

from ..context import EXTENSION_KEY as SERVICES_KEY
from . import session

# API routes whose answer names a page's URL (url_for): they need the pages registered.
NEEDS_PAGES = frozenset({"upload.published_release"})
# Loading waits for the requests being routed or run to finish (routes are only added while
# none is); a request arriving meanwhile waits for the loading. Both bounded.
LOAD_WAIT_SECONDS = 10.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def init_app(app: Flask) -> None:
    """Sessions now; the web pages and docs hosting on the first request for one. Call it
    before wrapping `app.wsgi_app` in anything that answers without Flask (the hot path)."""
    settings = app.extensions[SERVICES_KEY].settings
    session.configure(app, settings.data_dir)
    app.wsgi_app = LazyPages(app, app.wsgi_app)  # type: ignore[method-assign]


def _register_pages(app: Flask) -> None:
    from . import routes

    # Flask refuses new routes once an app has answered a request, because a request being
    # routed meanwhile could see half of them; LazyPages adds them while none is.
    answered = app._got_first_request
    app._got_first_request = False
    try:
        routes.register(app)
    finally:
        app._got_first_request = answered


class LazyPages:
    """WSGI middleware around Flask: until the pages are registered, routes each request
    first; one that no route answers (a page's URL, or a 404 anyway) or that needs a page's
    URL registers them, once, while no other request is being routed or run. From then on
    it only passes requests through. Until then each request Flask answers is routed twice
    (tens of microseconds); the hot path's answers never reach it."""

    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        self._app = app
        self._inner = inner
        self._ready = False
        self._loading = False
        self._active = 0
        self._changed = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self._ready:
            return self._inner(environ, start_response)
        if not self._enter():
            return self._busy(environ, start_response)
        try:
            wanted = self._wants_pages(environ)
        except BaseException:
            self._leave()
            raise
        if not wanted:
            try:
                return self._inner(environ, start_response)
            finally:
                self._leave()
        self._leave()
        if not self._load():
            return self._busy(environ, start_response)
        return self._inner(environ, start_response)

    def _wants_pages(self, environ: dict[str, Any]) -> bool:
        adapter = self._app.url_map.bind_to_environ(environ)
        try:
            endpoint, _args = adapter.match()
        except (NotFound, MethodNotAllowed):
            return True
        except HTTPException:  # a redirect to the slash-ended URL of an API route
            return False
        return endpoint in NEEDS_PAGES

    def _enter(self) -> bool:
        """Count a request in, once no loading is under way; False if it took too long."""
        with self._changed:
            if not self._changed.wait_for(lambda: not self._loading, LOAD_WAIT_SECONDS * 3):
                return False
            self._active += 1
            return True

    def _leave(self) -> None:
        with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def _load(self) -> bool:
        """Register the pages unless done; False if other requests kept running too long."""
        with self._changed:
            if not self._changed.wait_for(lambda: not self._loading, LOAD_WAIT_SECONDS * 3):
                return False
            if self._ready:
                return True
            self._loading = True  # from here on no request enters
            if not self._changed.wait_for(lambda: self._active == 0, LOAD_WAIT_SECONDS):
                self._loading = False
                self._changed.notify_all()
                return False
        registered = False
        try:
            _register_pages(self._app)
            registered = True
        finally:
            with self._changed:
                self._ready = registered
                self._loading = False
                self._changed.notify_all()
        return True

    @staticmethod
    def _busy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        refusal = ServiceUnavailable("The web pages are still loading; try again.")
        response = refusal.get_response(environ)
        response.headers["Retry-After"] = "1"
        return response(environ, start_response)
