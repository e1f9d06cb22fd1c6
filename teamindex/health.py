"""/healthz: no auth, says whether the database answers and the data dir takes writes."""

from __future__ import annotations

import os
import tempfile

from flask import Blueprint, Response

from .context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    svc = services()
    problems = []
    try:
        svc.db.serial()
    except Exception as exc:  # any database failure is the answer, not a crash
        problems.append(f"database: {exc}")
    try:
        fd, name = tempfile.mkstemp(dir=svc.settings.tmp_dir, prefix="healthz-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        problems.append(f"data dir not writable: {exc}")
    if problems:
        return Response("; ".join(problems) + "\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")
