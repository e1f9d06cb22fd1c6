"""Browser sessions: the secret key, the session cookie, who is viewing, and CSRF tokens.

The session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure on https requests) and
holds the user id, a session id (its digest is a row of the `sessions` table: logging out
deletes the row, so a copied cookie dies with the logout, in every server process), a stamp
derived from the user's password hash (changing the password ends every other session at
once) and the CSRF token. Only the web pages write it. Downloads
(/files/, the links on project pages) also read it when no credentials are sent, and never
set a cookie; the simple API and uploads keep Basic auth only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from ..access.httpauth import (
    authenticate,
    require_address_allowed,
    require_principal_address_allowed,
)
from ..access.permissions import ANONYMOUS, Principal
from ..access.sessionkey import load_secret_key
from ..clock import utc_stamp
from ..context import services
from ..errors import HTTPError
from ..models import User

SESSION_LIFETIME = timedelta(hours=12)
SESSION_RENEWAL = timedelta(minutes=10)
CSRF_FIELD = "csrf_token"
# Blueprints whose responses may carry the session cookie.
COOKIE_BLUEPRINTS = frozenset({"web"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="teamindex"'}


class IndexSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions, set only on web pages, Secure whenever the request is https
    (behind a trusted proxy, waitress derives that from X-Forwarded-Proto)."""

    salt = "teamindex-session"

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # pip, uv and poetry never send the cookie: skip building a signing serializer on
        # their requests (a tenth of a cached /simple/ page's time in the profile).
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        blueprint = (request.blueprint or "").split(".", 1)[0]
        if blueprint in COOKIE_BLUEPRINTS and not token_viewer():
            super().save_session(app, session, response)


def configure(app: Flask, data_dir: Path) -> None:
    """Session cookie settings and the persisted key for `app`."""
    app.secret_key = load_secret_key(data_dir)
    app.session_interface = IndexSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="teamindex_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


# -- who is viewing ---------------------------------------------------------------------------


def password_stamp(user: User) -> str:
    """Ties a session to the password it was opened with (keyed: the hash never leaves)."""
    key = current_app.secret_key
    assert isinstance(key, bytes)
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def log_in(user: User) -> None:
    """Start a fresh session for `user` (a new id and CSRF token: no session fixation)."""
    log_out()
    session.permanent = True
    sid = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    services().db.add_session(
        _session_digest(sid), user.id, now=utc_stamp(now), expires=utc_stamp(now + SESSION_LIFETIME)
    )
    session["uid"] = user.id
    session["sid"] = sid
    session["stamp"] = password_stamp(user)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    """End this request's session here and on the server (its row is deleted)."""
    sid = session.get("sid")
    if isinstance(sid, str):
        services().db.delete_session(_session_digest(sid))
    session.clear()


def _session_digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def session_user() -> User | None:
    """The logged-in user of this request's session, if it is still valid: its row exists
    (not logged out, not expired, user not deleted) and the password is unchanged."""
    uid, sid = session.get("uid"), session.get("sid")
    if not isinstance(uid, int) or not isinstance(sid, str):
        return None
    now = datetime.now(timezone.utc)
    db = services().db
    found = db.session_user(_session_digest(sid), utc_stamp(now))
    stamp = session.get("stamp", "")
    if (
        found is None
        or found[0].id != uid
        or not hmac.compare_digest(str(stamp), password_stamp(found[0]))
    ):
        session.clear()  # logged out, expired, deleted user or changed password
        return None
    user, expires = found
    # Sliding expiry like the cookie's, written at most once per SESSION_RENEWAL.
    if expires < utc_stamp(now + SESSION_LIFETIME - SESSION_RENEWAL):
        db.extend_session(_session_digest(sid), utc_stamp(now + SESSION_LIFETIME))
    return user


def resolve_viewer() -> Principal | None:
    """The viewer of a web page: the session's user, else Basic auth credentials, else the
    anonymous reader when the index allows one; None means "please log in". IP allowlists
    apply on every request, throttling wherever a password is checked."""
    if "viewer" in g:
        return g.viewer
    g.viewer = None  # while checking: an error page rendered after a refusal shows no one
    require_address_allowed()
    viewer: Principal | None = None
    user = session_user()
    if user is not None:
        viewer = Principal(user)
        require_principal_address_allowed(viewer)
    elif request.authorization is not None and request.authorization.type == "basic":
        credentials = request.authorization
        viewer = authenticate(credentials.username or "", credentials.password or "")
        if viewer is None:
            raise HTTPError(401, "Invalid credentials for teamindex.", CHALLENGE)
    elif services().settings.anonymous_read:
        viewer = ANONYMOUS
    g.viewer = viewer
    return viewer


def session_reader() -> Principal | None:
    """The user of a valid session cookie, for downloads (GET/HEAD under /files/) from a
    browser logged in to the web pages; None without one. The IP allowlists apply as on the
    pages; the response never carries the cookie (only web pages save the session)."""
    if not isinstance(session.get("sid"), str):
        return None
    require_address_allowed()
    user = session_user()
    if user is None:
        return None
    principal = Principal(user)
    require_principal_address_allowed(principal)
    return principal


def viewer() -> Principal:
    """The viewer resolved by the web gate; anonymous when there is none (login page) or
    when the gate refused the request (its error page)."""
    try:
        principal = resolve_viewer()
    except HTTPError:
        return ANONYMOUS
    return principal if principal is not None else ANONYMOUS


def safe_next(target: str | None) -> str:
    """A local path to return to after logging in; anything else goes home."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


# -- CSRF ---------------------------------------------------------------------------------


def token_viewer() -> bool:
    """Whether this request's viewer came in with an API token (Basic auth): such a request
    never gets a browser session, nor a CSRF token to post forms with."""
    principal = g.get("viewer")
    return isinstance(principal, Principal) and principal.token is not None


def csrf_token() -> str:
    """This session's CSRF token, made on first use (templates put it in every form); none
    for a token's requests (forms are for people, see token_viewer)."""
    if token_viewer():
        return ""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Every POST of a web form must carry the session's token (synchronizer token)."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPError(
            400,
            "The form is out of date or did not come from this site (missing or wrong CSRF "
            "token). Reload the page and try again.",
        )
