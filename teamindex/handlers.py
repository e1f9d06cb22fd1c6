"""The app-wide error handlers: each domain error, from whichever layer raised it, becomes one
HTTP answer here (errors.py keeps the error type and the response shape, below every layer)."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .db import Busy, InvalidText
from .errors import HTTPError, plain_error
from .index.storage import HashingStalled, StorageUnavailable

# A writer that held the database this long is done soon (CLI commands, backups); clients
# that honour Retry-After come back then.
BUSY_RETRY_SECONDS = 5


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

    @app.errorhandler(StorageUnavailable)
    def _store_down(error: StorageUnavailable) -> Response:
        # The object store (--storage s3://...) failed: nothing was recorded; say so in one
        # line (the store's words, never its credentials) and let clients retry.
        response = plain_error(503, f"Storage unavailable: {error}; retry later.")
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

    @app.errorhandler(InvalidText)
    def _invalid_text(error: InvalidText) -> Response:
        # PostgreSQL stores no NUL character: nothing named with one exists (a read finds
        # nothing, as on SQLite), and nothing with one is written.
        if request.method in {"GET", "HEAD"}:
            return plain_error(404, "Not found: no name here holds a NUL character.")
        return plain_error(400, "Text with a NUL character is not accepted here.")

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
