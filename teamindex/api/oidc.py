"""PyPI's trusted-publishing endpoints, so uv and pypa/gh-action-pypi-publish work unchanged.

uv asks `https://HOST/_/oidc/audience`, gets the CI's OIDC token for that audience and posts
it to `https://HOST/_/oidc/mint-token` (always at the host's root, always https); the GitHub
action posts to `/_/oidc/github/mint-token`. Errors are PyPI's shape, 422 with
`{"message": ..., "errors": [{"code": ..., "description": ...}]}`, which both print.
The exchange is a login: the global allowlist (403) and the throttle (429) come first, and a
refused token counts as a failed login from its address.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ..access.httpauth import client_ip, require_address_allowed
from ..access.oidc.exchange import ExchangeError, default_audience, exchange
from ..access.oidc.keys import KeyStore
from ..config import Settings
from ..context import services
from ..errors import HTTPError

bp = Blueprint("oidc", __name__)
KEYS_KEY = "teamindex.oidc_keys"
MAX_BODY = 64 << 10


def init_app(app: Flask, settings: Settings) -> None:
    """The endpoints and the issuers' key cache (a static JWKS file is read now)."""
    app.extensions[KEYS_KEY] = KeyStore(settings.oidc_ca_file, settings.oidc_jwks_file)
    app.register_blueprint(bp)


def audience() -> str:
    configured = services().settings.oidc_audience
    return configured or default_audience(bytes(current_app.secret_key or b""))


@bp.get("/_/oidc/audience")
def get_audience() -> Response:
    require_address_allowed()
    return jsonify(audience=audience())


@bp.post("/_/oidc/mint-token")
@bp.post("/_/oidc/github/mint-token")
def mint_token() -> Response:
    svc = services()
    ip = client_ip()
    require_address_allowed()
    wait = svc.throttle.retry_after(ip, None)
    if wait:
        raise HTTPError(
            429, f"Too many failed logins; retry in {wait} seconds.", {"Retry-After": str(wait)}
        )
    try:
        keys = current_app.extensions[KEYS_KEY]
        minted = exchange(svc.db, keys, audience(), _posted_token())
    except ExchangeError as exc:
        return _refuse(exc, ip)
    svc.audit.record(
        "oidc_mint",
        ip=ip,
        user=minted.user_name,
        token_id=minted.token_id,
        project=",".join(minted.projects),
        detail="repository {} workflow {} ref {} run {}".format(*minted.run)
        + f", expires {minted.expires}",
    )
    return jsonify(success=True, token=minted.secret, expires=minted.expires)


def _posted_token() -> Any:
    if (request.content_length or 0) > MAX_BODY:
        raise ExchangeError("invalid-payload", "the request body is too large")
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except ValueError:
        raise ExchangeError("invalid-payload", 'expected a JSON body {"token": "<JWT>"}') from None
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise ExchangeError("invalid-payload", 'expected a JSON body {"token": "<JWT>"}')
    return body["token"]


def _refuse(exc: ExchangeError, ip: str) -> Response:
    svc = services()
    svc.audit.record(
        "oidc_mint", ip=ip, outcome="denied", detail=f"{exc.code}: {exc}", best_effort=True
    )
    for kind, subject in svc.throttle.failure(ip, None):
        svc.audit.record(
            "throttled", ip=ip, outcome="blocked", detail=f"{kind} {subject}", best_effort=True
        )
    response = jsonify(
        message="Token request failed",
        errors=[{"code": exc.code, "description": str(exc)}],
    )
    response.status_code = 422
    return response
