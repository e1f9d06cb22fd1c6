"""/metrics in the Prometheus text format (prometheus-client).

Counted per app (a registry of its own, nothing global): requests by route template,
method and status; request durations by route; upload bytes and upload attempts by
status; downloads by kind; authentication failures. Read at scrape time from SQLite (never
the disk): number and bytes of stored files. Plus the process collector (memory, CPU,
open files).

The counters themselves are in ops/counters.py (no Flask: the hot path counts into them
before Flask is loaded); under `serve --workers N` a scrape sums every worker's.

Who may read it: administrators (Basic auth with their password, not a token), or any
client whose address is in the `metrics_allow` setting, so a Prometheus server needs no
password in its config.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..access.httpauth import client_ip, current_principal, login_required
from ..access.netrules import ip_allowed
from ..context import services
from ..errors import HTTPError
from .counters import Metrics

EXTENSION_KEY = "teamindex.metrics"
bp = Blueprint("metrics", __name__)


def observe(collectors: Metrics, response: Response) -> None:
    """Count a response Flask made (the hot path counts its own)."""
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = response.status_code
    started = g.get("metrics_started")
    elapsed = time.perf_counter() - started if started is not None else None
    collectors.count_request(rule, request.method, status, elapsed)
    if request.endpoint == "upload.file_upload":
        collectors.uploads.labels(str(status)).inc()
        if status == 200:
            collectors.upload_bytes.inc(sum(t.size for t in g.get("upload_temps", [])))
    elif request.endpoint == "files.download" and status in (200, 206):
        collectors.count_download("metadata" if request.path.endswith(".metadata") else "dist")
    if status == 401 and "Authorization" in request.headers:
        collectors.auth_failures.labels("invalid").inc()
    elif status == 403:
        collectors.auth_failures.labels("forbidden").inc()
    elif status == 429:
        collectors.auth_failures.labels("throttled").inc()


def collectors(app: Flask) -> Metrics:
    return app.extensions[EXTENSION_KEY]


def _metrics() -> Metrics:
    return collectors(current_app)


def _exposition() -> Response:
    body = generate_latest(_metrics().exposed)
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


@bp.get("/metrics")
def metrics() -> Response:
    allowed = services().settings.metrics_allow
    if allowed and ip_allowed(client_ip(), allowed):
        return _exposition()
    return _metrics_for_admins()


@login_required
def _metrics_for_admins() -> Response:
    principal = current_principal()
    # A token's scope (read, upload) never includes administration, an admin's token neither.
    if principal.token is not None or not principal.is_admin:
        raise HTTPError(403, "Metrics are for administrators.")
    return _exposition()


def init_app(app: Flask, collectors: Metrics) -> None:
    """Count every request of *app* into `collectors` (made by whoever builds the stack:
    the hot path counts into them too) and serve /metrics."""
    app.extensions[EXTENSION_KEY] = collectors

    @app.before_request
    def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        observe(collectors, response)
        return response

    app.register_blueprint(bp)
