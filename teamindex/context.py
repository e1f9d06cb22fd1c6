"""The per-app services object every blueprint reaches through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .audit import AuditLog
from .auth import CredentialCache, UsageRecorder
from .config import Settings
from .db import Database
from .logincache import LoginCache
from .netrules import Throttle
from .pagecache import PageCache
from .storage import Storage

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
