"""The request log: one line per request on the `teamindex.access` logger (stderr under
`teamindex serve`, so journald keeps it).

    2026-11-25T10:42:56.123Z 10.0.0.7 alice "GET /simple/numpy/" 200 5123 3.4ms

Fields: UTC time, client IP (REMOTE_ADDR, which waitress rewrites only for trusted
proxies), user or '-', method and path, status, body bytes, duration until the body was
sent. Never logged: headers (Authorization carries passwords and tokens) and the query
string (the one place a client could put a secret in a URL), and the capability segment of
docs URLs (/_docs/<capability>/..., a short-lived read permission). Non-printable and
non-ASCII path bytes are percent-encoded, so one request is always one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..access.permissions import Principal

if TYPE_CHECKING:
    from flask import Flask, Response

log = logging.getLogger("teamindex.access")

USER_KEY = "teamindex.user"
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
DOCS_CAPABILITY_PREFIX = "/_docs/"  # web.hosting serves docs under /_docs/<capability>/

StartResponse = Callable[..., Any]


def format_line(
    environ: dict[str, Any], status: str, size: int | None, seconds: float, now: datetime
) -> str:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if path.startswith(DOCS_CAPABILITY_PREFIX):
        _cap, slash, rest = path.removeprefix(DOCS_CAPABILITY_PREFIX).partition("/")
        path = f"{DOCS_CAPABILITY_PREFIX}-{slash}{rest}"
    safe_path = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE)
    method = quote(environ.get("REQUEST_METHOD", "-"), safe="")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return (
        f"{stamp} {environ.get('REMOTE_ADDR') or '-'} {environ.get(USER_KEY, '-')} "
        f'"{method} {safe_path}" {status} {"-" if size is None else size} '
        f"{seconds * 1000:.1f}ms"
    )


class RequestLog:
    """WSGI middleware that logs each request once its body has been sent (or failed)."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        seen: dict[str, Any] = {"status": "500", "length": None}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            for name, value in headers:
                if name.lower() == "content-length" and value.isdigit():
                    seen["length"] = int(value)
            return start_response(status, headers, exc_info)

        def finish(sent: int | None) -> None:
            if log.isEnabledFor(logging.INFO):
                size = sent if sent is not None else seen["length"]
                elapsed = time.monotonic() - started
                now = datetime.now(timezone.utc)
                log.info("%s", format_line(environ, seen["status"], size, elapsed, now))

        try:
            body = self.app(environ, start)
        except BaseException:
            finish(0)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            # A download: waitress sends a file wrapper straight from the file, which a
            # wrapping iterator would defeat, so hook its close() instead.
            original_close = body.close

            def close() -> None:
                try:
                    original_close()
                finally:
                    finish(None)

            body.close = close  # type: ignore[method-assign]
            return body
        return _LoggedBody(body, finish)


class _LoggedBody:
    def __init__(self, body: Iterable[bytes], finish: Callable[[int | None], None]) -> None:
        self._body = body
        self._finish = finish
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(self._sent)


def init_app(app: Flask) -> None:
    """Name the user of each request Flask answers in its log line; RequestLog, wrapped
    around the app's WSGI callable by whoever serves it, writes the line. Flask is imported
    here: RequestLog logs the hot path's answers before Flask is loaded (issue 14)."""
    from flask import request

    from ..access.httpauth import basic_auth

    def remember_user(response: Response) -> Response:
        principal = basic_auth.current_user()
        if isinstance(principal, Principal) and principal.user is not None:
            request.environ[USER_KEY] = principal.user.name
        return response

    app.after_request(remember_user)
