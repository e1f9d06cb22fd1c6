"""/healthz: no auth, says whether the database answers and the data dir takes writes.

Anyone may read it, so the answer names the failing part and an errno symbol only; the
details (with paths) go to the log."""

from __future__ import annotations

import errno
import logging
import os
import tempfile

from flask import Blueprint, Response

from ..context import services

bp = Blueprint("health", __name__)
log = logging.getLogger("teamindex")


@bp.get("/healthz")
def healthz() -> Response:
    svc = services()
    problems = []
    try:
        svc.db.serial()
    except Exception:  # any database failure is the answer, not a crash
        log.exception("healthz: the database does not answer")
        problems.append("database: not answering")
    try:
        fd, name = tempfile.mkstemp(dir=svc.settings.tmp_dir, prefix="healthz-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        log.error("healthz: data dir not writable: %s", exc)
        problems.append(f"data dir not writable ({errno.errorcode.get(exc.errno or 0, 'error')})")
    if problems:
        return Response("; ".join(problems) + "\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")
