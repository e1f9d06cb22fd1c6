"""The per-app services object every blueprint reaches through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .access.audit import AuditLog
from .access.auth import CredentialCache, UsageRecorder
from .access.logincache import LoginCache
from .access.netrules import Throttle
from .api.pagecache import PageCache
from .config import Settings
from .db import Database
from .index.storage import Storage

EXTENSION_KEY = "teamindex"


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    storage: Storage
    credentials: CredentialCache
    logins: LoginCache
    pages: PageCache
    audit: AuditLog
    throttle: Throttle
    token_touch: UsageRecorder


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
