"""The application factory: create_app(settings) wires services, blueprints and errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

from . import web
from .access.audit import AuditLog
from .access.auth import CredentialCache, UsageRecorder
from .access.httpauth import answer_early_refusal
from .access.logincache import LoginCache
from .access.netrules import Throttle, ThrottlePolicy
from .api import files, jsonapi, oidc, simple, upload, yank
from .api.hotpath import HotReads
from .api.pagecache import PageCache
from .clock import utc_stamp
from .config import Settings, check_combination, load_settings
from .context import EXTENSION_KEY, Services
from .db import BUSY_TIMEOUT_MS, REQUEST_BUSY_TIMEOUT_MS, Database
from .handlers import register_error_handlers
from .index.inflight import sweep_dead
from .index.storage import Store, make_private, open_storage
from .ops import metrics, requestlog
from .ops.health import bp as health_bp
from .ops.serving import INLINE_KEY
from .upstream import Upstream

log = logging.getLogger("teamindex")

# Form fields other than the file: a 600 KB README in `description` must fit (PROTOCOL 6.6).
MAX_FORM_MEMORY = 16 << 20
MAX_FORM_PARTS = 10_000
# Multipart framing and metadata fields around the file itself.
FORM_OVERHEAD = 32 << 20
SWEPT_NAMES_LOGGED = 20


class LazyBuilderRule(Rule):
    """A URL rule that compiles its url_for() builder on its first use, not when registered.

    Werkzeug compiles two builder functions per rule (an AST, then compile()) as each rule is
    added: ~1 ms a rule, two thirds of create_app's time at a cold start, for ~60 rules of
    which a worker building simple pages uses a handful. Matching is unchanged."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        slot = "_build_unknown" if append_unknown else "_build"

        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            compiled = Rule._compile_builder(rule, append_unknown).__get__(rule, None)
            setattr(rule, slot, compiled)  # two threads racing here compile the same code
            return compiled(**values)

        return build  # bound by Rule.compile() like the compiled one


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app for one data dir; migrates the database on the way."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.url_rule_class = LazyBuilderRule
    app.request_class = upload.IndexRequest
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_size + FORM_OVERHEAD,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    check_combination(settings)
    _tighten(settings)  # before the first file is created in it
    storage = open_storage(settings)
    storage.ensure_dirs()
    _sweep_crash_debris(storage)
    # Requests wait a few seconds for another writer, then answer 503; start-up waits as
    # long as a CLI command would.
    db = Database(settings.database, busy_timeout_ms=REQUEST_BUSY_TIMEOUT_MS)
    with db.waiting(BUSY_TIMEOUT_MS):
        db.migrate()
        db.prune_audit(
            utc_stamp(datetime.now(timezone.utc) - timedelta(days=settings.audit_retention_days))
        )
    upstream = Upstream(settings, db) if settings.upstream else None
    if upstream is not None:
        upstream.ensure_dirs()
    app.extensions[EXTENSION_KEY] = Services(
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
    # Requests waitress refused on their headers (serving.BodyGate) are answered first.
    app.before_request(answer_early_refusal)
    for blueprint in (simple.bp, jsonapi.bp, files.bp, upload.bp, yank.bp, health_bp):
        app.register_blueprint(blueprint)
    oidc.init_app(app, settings)  # trusted publishing: /_/oidc/
    app.teardown_request(upload.discard_upload_temps)
    register_error_handlers(app)
    # Sessions, and browser pages at / and hosted docs at /docs/ from the first request for
    # one (cold start, issue 14): wraps Flask itself, inside the hot path and the request log.
    web.init_app(app)
    metrics.init_app(app)  # /metrics and its counters
    # Cached simple pages for known logins, before Flask's request machinery (issue 3),
    # and their downloads (issue 14; with a front server, the answer naming the file).
    counters = metrics.collectors(app)
    hot = HotReads(
        app.wsgi_app,
        app.extensions[EXTENSION_KEY],
        counters.count_request,
        counters.count_download,
    )
    app.wsgi_app = hot  # type: ignore[method-assign]
    if not settings.database_url:  # page hits on waitress' socket thread: SQLite reads only
        app.extensions[INLINE_KEY] = hot.pre_answer
    requestlog.init_app(app)  # one log line per request, hot path included
    make_private(settings.data_dir)  # the database and session key now exist: 0600
    return app


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


def prepare(settings: Settings) -> int:
    """The start-up work of create_app that must run once before `serve --workers N` forks:
    private data dir, crash debris swept, database migrated and audit pruned, session key
    made (each child's create_app repeats these harmlessly: all idempotent, and the sweep
    spares live owners). The number of users, for the first-start hint."""
    from .access.sessionkey import load_secret_key

    _tighten(settings)
    storage = open_storage(settings)
    storage.ensure_dirs()
    _sweep_crash_debris(storage)
    db = Database(settings.database)
    try:
        with db.waiting(BUSY_TIMEOUT_MS):
            db.migrate()
            db.prune_audit(
                utc_stamp(
                    datetime.now(timezone.utc) - timedelta(days=settings.audit_retention_days)
                )
            )
        users = db.count_users()
    finally:
        db.close()  # no connection may cross the fork
    load_secret_key(settings.data_dir)  # before the children race to create it
    make_private(settings.data_dir)
    return users
