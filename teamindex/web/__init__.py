"""The browser side of teamindex: server-rendered pages and hosted documentation.

`init_app` registers the `web` blueprint (login, project list and pages, account, admin)
and the `docs` blueprint, and sets up sessions. The simple API and uploads are untouched by
it: they keep Basic auth only. Downloads also accept the session when no credentials are
sent (the project pages link to them); no cookie is ever set outside the web pages.
"""

from __future__ import annotations

from flask import Flask

from ..context import EXTENSION_KEY as SERVICES_KEY
from ..index.docsbackends import open_docs
from . import account, admin, hosting, login, origins, pages, publishers, session, throttle
from .base import bp
from .readme import ReadmeCache
from .state import EXTENSION_KEY, WebState

bp.register_blueprint(login.bp)
bp.register_blueprint(pages.bp)
bp.register_blueprint(account.bp)
bp.register_blueprint(publishers.bp)  # owners' and admins' trusted publishers
admin.bp.register_blueprint(throttle.bp)  # /admin/throttle, behind the admin check
admin.bp.register_blueprint(origins.bp)  # /admin/upstream, behind the admin check
bp.register_blueprint(admin.bp)


def init_app(app: Flask) -> None:
    """Add the web pages and docs hosting to `app` (after its Services exist)."""
    settings = app.extensions[SERVICES_KEY].settings
    session.configure(app, settings.data_dir)
    app.extensions[EXTENSION_KEY] = WebState(
        readmes=ReadmeCache(external_images=settings.readme_external_images),
        docs=open_docs(settings.data_dir, app.extensions[SERVICES_KEY].storage),
    )
    app.register_blueprint(bp)
    app.register_blueprint(hosting.bp)
