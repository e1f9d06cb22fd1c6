"""Error responses: one line, in the status line and in the body.

twine prints only the reason phrase, uv only the body, poetry both (PROTOCOL.md 6.10), so
every client error carries its message in both places. The reason phrase must be
ISO-8859-1 and a single line.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .db import Busy
from .index.storage import HashingStalled

MAX_REASON = 300
# A writer that held the database this long is done soon (CLI commands, backups); clients
# that honour Retry-After come back then.
BUSY_RETRY_SECONDS = 5


class HTTPError(Exception):
    """Raised by views for a client error with a message users should read."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reason_phrase(message: str) -> str:
    line = " ".join(message.split())[:MAX_REASON]
    return line.encode("iso-8859-1", "replace").decode("iso-8859-1")


def plain_error(status: int, message: str, *, message_as_reason: bool = True) -> Response:
    response = Response(message.rstrip("\n") + "\n", mimetype="text/plain")
    response.status = f"{status} {reason_phrase(message)}" if message_as_reason else status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPError)
    def _domain(error: HTTPError) -> Response:
        response = plain_error(error.status, error.message)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HashingStalled)
    def _stalled(error: HashingStalled) -> Response:
        # The server is overloaded or stuck: the request fails, the worker goes on.
        response = plain_error(503, f"Upload could not be processed: {error}; retry later.")
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Busy)
    def _busy(error: Busy) -> Response:
        # Another process (a CLI command, a backup) holds the write lock: nothing was
        # written, the same request succeeds a little later.
        response = plain_error(
            503, "The index database is busy with another write; retry in a few seconds."
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge) -> Response:
        return plain_error(413, "Upload too large for this index.")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        response = plain_error(
            error.code or 500, error.description or error.name, message_as_reason=False
        )
        for key, value in error.get_headers():
            if key.lower() not in {"content-type", "content-length"}:
                response.headers[key] = value
        return response
