"""/admin/throttle: the failed-login throttle's counts and blocks, and clearing them.

Nested in the admin blueprint, so only administrators get here; a token is refused even if
its owner is one (clearing a block is an administrator's decision, not a tool's). Every
clear is audited with the administrator's name and address, like the CLI's.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, flash, redirect, request, url_for

from ..access.httpauth import client_ip
from ..access.netrules import normalize_address, throttle_view, user_key
from ..context import services
from ..errors import HTTPError
from .base import page, require_admin

bp = Blueprint("throttle", __name__)
KINDS = ("address", "user")


@bp.before_request
def _no_tokens() -> None:
    if require_admin().token is not None:
        raise HTTPError(403, "Tokens cannot manage the throttle; log in with your password.")


@bp.get("/throttle")
def overview() -> Response:
    svc = services()
    now = time.time()
    entries = svc.db.throttle_entries(now=now, window=svc.settings.throttle_seconds)
    return page(
        "admin_throttle.html",
        views=[throttle_view(entry, now) for entry in entries],
        settings=svc.settings,
        client_ip=client_ip(),
    )


@bp.post("/throttle/clear")
def clear() -> Response:
    form = request.form
    if form.get("all") == "yes":
        kind, subject, what = None, None, "all"
    else:
        kind, subject = form.get("kind", ""), form.get("subject", "").strip()
        if kind not in KINDS or not subject:
            raise HTTPError(400, "Not cleared: give kind (address or user) and subject.")
        subject = _throttle_key(kind, subject)
        what = f"{kind} {subject}"
    svc = services()
    if svc.db.clear_throttle(kind, subject) == 0 and kind is not None:
        raise HTTPError(404, f"Nothing counted or blocked for {what}.")
    svc.audit.record("throttle_clear", user=require_admin().name, ip=client_ip(), detail=what)
    flash(f"Cleared the throttle for {what}.")
    return redirect(url_for("web.admin.throttle.overview"), code=303)


def _throttle_key(kind: str, subject: str) -> str:
    """The key the throttle counts under, as the CLI finds it: `Dave` is the stored user
    `dave` (or the casefolded name when there is no such user), and any address of an
    IPv6 /64 is that /64; 400 for something that is no address."""
    if kind == "user":
        user = services().db.get_user(subject)
        return user_key(subject, user.name if user else None)
    try:
        return normalize_address(subject)
    except ValueError as exc:
        raise HTTPError(400, f"Not cleared: {exc}.") from None
