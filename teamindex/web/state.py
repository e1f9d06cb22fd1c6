"""What the web pages keep per app: the README cache and the docs store."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..docstore import DocsStore
from .readme import ReadmeCache

EXTENSION_KEY = "teamindex.web"


@dataclass(frozen=True)
class WebState:
    readmes: ReadmeCache
    docs: DocsStore


def web_state() -> WebState:
    return current_app.extensions[EXTENSION_KEY]
