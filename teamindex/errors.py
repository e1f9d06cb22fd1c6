"""Error responses: one line, in the status line and in the body.

twine prints only the reason phrase, uv only the body, poetry both (PROTOCOL.md 6.10), so
every client error carries its message in both places. The reason phrase must be
ISO-8859-1 and a single line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Response

MAX_REASON = 300


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
    # Flask is imported where a response is made, not with HTTPError: the hot path raises
    # and catches HTTPError before Flask is loaded (cold start, issue 14).
    from flask import Response

    response = Response(message.rstrip("\n") + "\n", mimetype="text/plain")
    response.status = f"{status} {reason_phrase(message)}" if message_as_reason else status
    return response
