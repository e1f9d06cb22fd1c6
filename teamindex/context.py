"""The per-app services object every blueprint reaches through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .auth import CredentialCache
from .config import Settings
from .db import Database
from .pagecache import PageCache
from .storage import Storage

EXTENSION_KEY = "teamindex"


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    storage: Storage
    credentials: CredentialCache
    pages: PageCache


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
