"""The per-app services object every blueprint reaches through `services()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from .access.audit import AuditLog
from .access.auth import CredentialCache, UsageRecorder
from .access.logincache import LoginCache
from .access.netrules import Throttle
from .config import Settings
from .db import Database
from .index.storage import Store
from .upstream import Upstream

if TYPE_CHECKING:  # a type only: context sits below the api layer that owns the cache
    from .api.pagecache import PageCache

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
    return current_app.extensions[EXTENSION_KEY]
