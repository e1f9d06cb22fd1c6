"""The application factory: create_app(settings) wires services, blueprints and errors.

The services and the stack around Flask (request log, hot path) are built in boot.py,
without Flask: `serve` answers its first requests before this module is loaded (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

from . import web
from .access.httpauth import answer_early_refusal
from .api import files, jsonapi, oidc, simple, upload, yank
from .boot import FORM_OVERHEAD, front, open_services
from .config import Settings, load_settings
from .context import EXTENSION_KEY, Services
from .handlers import register_error_handlers
from .index.storage import make_private
from .ops import metrics, requestlog
from .ops.counters import Metrics
from .ops.health import bp as health_bp
from .ops.serving import INLINE_KEY

# Form fields other than the file: a 600 KB README in `description` must fit (PROTOCOL 6.6).
MAX_FORM_MEMORY = 16 << 20
MAX_FORM_PARTS = 10_000


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
    svc = open_services(settings or load_settings())
    counters = Metrics(svc.db, svc.upstream)
    app = flask_app(svc, counters)
    app.wsgi_app, pre_answer = front(svc, counters, app.wsgi_app)  # type: ignore[method-assign]
    if pre_answer is not None:  # page hits on waitress' socket thread: SQLite reads only
        app.extensions[INLINE_KEY] = pre_answer
    make_private(svc.settings.data_dir)  # the database and session key now exist: 0600
    return app


def flask_app(svc: Services, counters: Metrics) -> Flask:
    """The Flask app on `svc`: views, hooks and error handlers, counting into `counters`.
    Its wsgi_app is what boot.front puts behind the request log and the hot path."""
    app = Flask(__name__)
    app.url_rule_class = LazyBuilderRule
    app.request_class = upload.IndexRequest
    app.config.update(
        MAX_CONTENT_LENGTH=svc.settings.max_upload_size + FORM_OVERHEAD,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.extensions[EXTENSION_KEY] = svc
    # Requests waitress refused on their headers (serving.BodyGate) are answered first.
    app.before_request(answer_early_refusal)
    for blueprint in (simple.bp, jsonapi.bp, files.bp, upload.bp, yank.bp, health_bp):
        app.register_blueprint(blueprint)
    oidc.init_app(app, svc.settings)  # trusted publishing: /_/oidc/
    app.teardown_request(upload.discard_upload_temps)
    register_error_handlers(app)
    # Sessions, and browser pages at / and hosted docs at /docs/ from the first request for
    # one (cold start, issue 14): wraps Flask itself, inside the hot path and the request log.
    web.init_app(app)
    metrics.init_app(app, counters)  # /metrics and its counters
    requestlog.init_app(app)  # names the user in the request log's line
    return app
