"""Start-up without Flask: a data dir's services, and the WSGI stack `serve` runs, whose Flask
part is built on a thread of its own while the server already answers (issue 14).

A CI runner's first request to a freshly started server is a /simple/ page with a token.
The hot path (api/hotpath.py) answers it with the services alone: it verifies the login
(access/login.py) and renders the page (api/simplepages.py) exactly as Flask's view would.
Importing Flask, werkzeug, Jinja and the views was most of a cold start, so `serve` binds,
answers what the hot path can, and loads Flask meanwhile; a request only Flask can answer
waits for it (bounded), then goes through the same stack as ever.

The stack, outside in: the request log, the hot path, then Flask (create_app builds the same
stack around a Flask app built at once: the tests' and other WSGI servers' entry point).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import loading
from .access.audit import AuditLog
from .access.auth import CredentialCache, UsageRecorder
from .access.logincache import LoginCache
from .access.netrules import Throttle, ThrottlePolicy
from .access.sessionkey import load_secret_key
from .api.hotpath import HotReads
from .api.pagecache import PageCache
from .clock import utc_stamp
from .config import Settings, check_combination
from .context import Services
from .db import BUSY_TIMEOUT_MS, REQUEST_BUSY_TIMEOUT_MS, Database
from .errors import reason_phrase
from .index.inflight import sweep_dead
from .index.storage import Store, make_private, open_storage
from .ops.requestlog import RequestLog
from .ops.serving import PreAnswer, freeze_startup_objects
from .ops.tally import Counts, Tally

if TYPE_CHECKING:
    from .ops.counters import Metrics

log = logging.getLogger("teamindex")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Multipart framing and metadata fields around the file itself.
FORM_OVERHEAD = 32 << 20
SWEPT_NAMES_LOGGED = 20
# How long a request that needs Flask waits for it to load (~0.2 s on an idle 2-core VM).
FLASK_WAIT_SECONDS = 30.0


def open_services(settings: Settings) -> Services:
    """The services of one data dir: private data dir, crash debris swept, database
    migrated and audit pruned, caches empty."""
    check_combination(settings)
    # Requests wait a few seconds for another writer, then answer 503.
    storage, db = _open_data_dir(settings, REQUEST_BUSY_TIMEOUT_MS)
    upstream = None
    if settings.upstream:
        from .upstream import Upstream  # only with a proxy: it loads an HTTP client

        upstream = Upstream(settings, db)
        upstream.ensure_dirs()
    return Services(
        settings=settings,
        db=db,
        storage=storage,
        credentials=CredentialCache(settings.auth_cache_seconds),
        logins=LoginCache(settings.auth_cache_seconds),
        pages=PageCache(),
        audit=AuditLog(db, record_downloads=settings.audit_downloads),
        throttle=Throttle(
            ThrottlePolicy(
                ip_failures=settings.throttle_ip_failures,
                user_failures=settings.throttle_user_failures,
                window=settings.throttle_seconds,
                cooldown=settings.throttle_seconds,
            ),
            db,
        ),
        token_touch=UsageRecorder(db.touch_token),
        upstream=upstream,
    )


def prepare(settings: Settings) -> int:
    """The start-up work that must run once before `serve --workers N` forks: private data
    dir, crash debris swept, database migrated and audit pruned, session key made (each
    child's open_services repeats these harmlessly: all idempotent, and the sweep spares
    live owners). The number of users, for the first-start hint."""
    _storage, db = _open_data_dir(settings, BUSY_TIMEOUT_MS)
    try:
        users = db.count_users()
    finally:
        db.close()  # no connection may cross the fork
    load_secret_key(settings.data_dir)  # before the children race to create it
    make_private(settings.data_dir)
    return users


def front(svc: Services, counters: Counts, inner: WSGIApp) -> tuple[WSGIApp, PreAnswer | None]:
    """The request log around the hot path around `inner` (Flask), and the hot path's
    answer on waitress' socket thread (SQLite only: there it may only read)."""
    hot = HotReads(inner, svc, counters.count_request, counters.count_download)
    pre_answer = hot.pre_answer if not svc.settings.database_url else None
    return RequestLog(hot), pre_answer


@dataclass
class Serving:
    """What `serve` runs: the WSGI stack, its services, and the hot path's socket-thread
    answer for ops.serving.make_wsgi_server."""

    wsgi: WSGIApp
    svc: Services
    pre_answer: PreAnswer | None
    flask: DeferredApp


def serving(settings: Settings, build_flask: Callable[[Services, Metrics], WSGIApp]) -> Serving:
    """`serve`'s stack with Flask deferred: the counters (ops/tally.py) and `build_flask`
    (app.flask_app's WSGI callable) are made on a thread of their own from `flask.start()`,
    called once the server is listening."""
    svc = open_services(settings)
    load_secret_key(settings.data_dir)
    make_private(settings.data_dir)  # the database and session key exist: 0600
    tally = Tally()

    def build() -> WSGIApp:
        from .ops.counters import Metrics, count_in_shared_dir

        count_in_shared_dir()  # under --workers N: before this process's first metric
        counters = Metrics(svc.db, svc.upstream)
        tally.attach(counters)
        app = build_flask(svc, counters)
        freeze_startup_objects()  # Flask's objects too, as those loaded before the fork
        return app

    flask = DeferredApp(build)
    wsgi, pre_answer = front(svc, tally, flask)
    return Serving(wsgi, svc, pre_answer, flask)


class DeferredApp:
    """A WSGI app built on a thread of its own: requests wait for it, up to
    FLASK_WAIT_SECONDS, then get a 503 (as after a failed build, which is logged)."""

    def __init__(self, build: Callable[[], WSGIApp]) -> None:
        self._build = build
        self._app: WSGIApp | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        loader = threading.Thread(target=self._load, name="load-flask", daemon=True)
        loading.begin(loader)  # a request needing werkzeug meanwhile waits (loading.py)
        loader.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the app is built within `timeout` (FLASK_WAIT_SECONDS) seconds (False:
        still loading, or the build failed)."""
        ready = self._ready.wait(FLASK_WAIT_SECONDS if timeout is None else timeout)
        return ready and self._app is not None

    def _load(self) -> None:
        try:
            self._app = self._build()
        except Exception:
            log.exception("loading the web application failed; requests it answers get 503")
        finally:
            loading.end()
            self._ready.set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.wait():
            message = "teamindex is starting or failed to start; retry shortly.\n"
            body = message.encode()
            start_response(
                f"503 {reason_phrase(message)}",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", "1"),
                ],
            )
            return [body]
        assert self._app is not None
        return self._app(environ, start_response)


def _open_data_dir(settings: Settings, busy_timeout_ms: int) -> tuple[Store, Database]:
    """The store and the database of a data dir made private (before the first file is
    created in it), crash debris swept, the database migrated and the audit pruned; start-up
    waits for another writer as long as a CLI command would, requests `busy_timeout_ms`."""
    _tighten(settings)
    storage = open_storage(settings)
    storage.ensure_dirs()
    _sweep_crash_debris(storage)
    db = Database(settings.database, busy_timeout_ms=busy_timeout_ms)
    with db.waiting(BUSY_TIMEOUT_MS):
        db.migrate()
        cutoff = datetime.now(timezone.utc) - timedelta(days=settings.audit_retention_days)
        db.prune_audit(utc_stamp(cutoff))
    return storage, db


def _tighten(settings: Settings) -> None:
    """Data dir 0700, database and session key 0600; says so when an existing dir was wider."""
    for path in make_private(settings.data_dir):
        log.warning(
            "made %s private (owner only): it held password hashes readable by others", path
        )


def _sweep_crash_debris(storage: Store) -> None:
    """Delete what crashed processes left in tmp/ (inflight.sweep_dead), and say so: after
    a kill -9 or power loss the restart leaves `teamindex check` clean."""
    swept = sweep_dead(storage.tmp_dir)
    if swept:
        log.warning(
            "swept %d file(s), %d bytes, left in %s by processes that died (uploads cut off "
            "by a crash; no row was written for them): %s",
            len(swept),
            sum(size for _path, size in swept),
            storage.tmp_dir,
            ", ".join(path.name for path, _size in swept[:SWEPT_NAMES_LOGGED])
            + (", ..." if len(swept) > SWEPT_NAMES_LOGGED else ""),
        )
