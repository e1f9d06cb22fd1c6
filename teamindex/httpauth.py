"""HTTP Basic authentication for every protected route (flask-httpauth).

pip, uv and poetry send credentials only after a 401 that carries
`WWW-Authenticate: Basic realm="teamindex"` (or up front when configured), so a missing or
wrong credential is always 401 with that header; a known user without the right is 403.
"""

from __future__ import annotations

from flask import Response
from flask_httpauth import HTTPBasicAuth

from .auth import ANONYMOUS, Identity
from .context import services
from .errors import plain_error

REALM = "teamindex"

basic_auth = HTTPBasicAuth(realm=REALM)


@basic_auth.verify_password
def _verify(username: str, password: str) -> Identity | None:
    svc = services()
    if not username and not password:
        return ANONYMOUS if svc.settings.anonymous_read else None
    user = svc.db.get_user(username)
    if svc.credentials.verify(user, password):
        return Identity(user)
    return None


@basic_auth.error_handler
def _unauthorized(status: int) -> Response:
    if status == 401:
        return plain_error(401, "Invalid or missing credentials for teamindex.")
    return plain_error(status, "Access denied.")


def current_identity() -> Identity:
    identity = basic_auth.current_user()
    return identity if isinstance(identity, Identity) else ANONYMOUS


login_required = basic_auth.login_required
