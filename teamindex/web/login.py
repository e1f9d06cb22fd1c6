"""/login and /logout: the session cookie as a second way in, next to Basic auth.

The form's password check is httpauth.authenticate, the very function Basic auth uses, so
the global and per-user IP allowlists, the throttle (429) and the audit of failures apply
to both in the same way. Tokens are for tools: the form takes passwords only.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, request, url_for

from ..access.auth import TOKEN_USERNAME, looks_like_token
from ..access.httpauth import authenticate
from .base import page
from .session import log_in, log_out, safe_next, session_user

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if session_user() is not None:
            return redirect(target)
        return page("login.html", next=target, username="", error="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    error = ""
    if username == TOKEN_USERNAME or looks_like_token(password):
        error = "Log in with your password; API tokens are for pip, uv, poetry and twine."
    elif not username or not password:
        error = "Enter your user name and password."
    else:
        principal = authenticate(username, password)  # 403 / 429 raise from here
        if principal is not None and principal.user is not None:
            log_in(principal.user)
            return redirect(target, code=303)
        error = "Wrong user name or password."
    return page("login.html", status=401, next=target, username=username, error=error)


@bp.post("/logout")
def logout() -> Response:
    log_out()
    return redirect(url_for("web.auth.login"), code=303)
