"""The per-app services object every blueprint reaches through `services()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .access.audit import AuditLog
from .access.auth import CredentialCache, UsageRecorder
from .access.logincache import LoginCache
from .access.netrules import Throttle
from .config import Settings
from .db import Database
from .index.storage import Store

if TYPE_CHECKING:  # a type only: context sits below the api layer that owns the cache
    from .api.pagecache import PageCache
    from .upstream import Upstream

EXTENSION_KEY = "teamindex"


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    storage: Store
    credentials: CredentialCache
    logins: LoginCache
    pages: PageCache
    audit: AuditLog
    throttle: Throttle
    token_touch: UsageRecorder
    upstream: Upstream | None = None  # the proxy (issue 13); None: no --upstream


def services() -> Services:
    """The services of the app handling the current request (Flask views only). Flask is
    imported here, not with this module: the hot path uses Services before Flask is loaded
    (cold start, issue 14), and an import of a loaded module costs well under a microsecond."""
    from flask import current_app

    return current_app.extensions[EXTENSION_KEY]
