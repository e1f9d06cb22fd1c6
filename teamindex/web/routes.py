"""The web pages' blueprints, assembled once per process, and their registration on an app.

Imported on an app's first request for a page (web/__init__.py: LazyPages), not at start.
"""

from __future__ import annotations

from flask import Flask

from ..context import EXTENSION_KEY as SERVICES_KEY
from ..index.docsbackends import open_docs
from .account import bp as account_bp
from .admin import bp as admin_bp
from .base import bp
from .hosting import bp as hosting_bp
from .login import bp as login_bp
from .origins import bp as origins_bp
from .pages import bp as pages_bp
from .publishers import bp as publishers_bp
from .readme import ReadmeCache
from .state import EXTENSION_KEY, WebState
from .throttle import bp as throttle_bp

bp.register_blueprint(login_bp)
bp.register_blueprint(pages_bp)
bp.register_blueprint(account_bp)
bp.register_blueprint(publishers_bp)  # owners' and admins' trusted publishers
admin_bp.register_blueprint(throttle_bp)  # /admin/throttle, behind the admin check
admin_bp.register_blueprint(origins_bp)  # /admin/upstream, behind the admin check
bp.register_blueprint(admin_bp)


def register(app: Flask) -> None:
    """Add the web pages and docs hosting to `app` (its Services and session exist)."""
    services = app.extensions[SERVICES_KEY]
    app.extensions[EXTENSION_KEY] = WebState(
        readmes=ReadmeCache(external_images=services.settings.readme_external_images),
        docs=open_docs(services.settings.data_dir, services.storage),
    )
    app.register_blueprint(bp)
    app.register_blueprint(hosting_bp)
