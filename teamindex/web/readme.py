"""README rendering as on PyPI: readme_renderer picks Markdown, reStructuredText or plain
text from Description-Content-Type and cleans the HTML with nh3 (no scripts, no event
handlers, no javascript: links), so a README cannot run code in a viewer's session."""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from email.message import Message

from markupsafe import Markup

Renderer = Callable[..., "str | None"]

# Warehouse's table (warehouse/utils/readme.py): no content type means reStructuredText.
# readme_renderer modules, imported on first use: with docutils and Pygments they take
# ~100 ms, a quarter of the server's cold start, and only the web UI needs them.
RENDERERS: dict[str, str] = {
    "": "rst",
    "text/x-rst": "rst",
    "text/plain": "txt",
    "text/markdown": "markdown",
}
# Only these content-type parameters are passed on (variant=GFM|CommonMark for Markdown).
PARAMETERS = {"variant"}


def render_readme(text: str, content_type: str = "") -> Markup:
    """The README as safe HTML; reStructuredText that fails to render falls back to text."""
    header = Message()
    header["Content-Type"] = content_type or "text/x-rst"
    kind = header.get_content_type() if content_type else ""
    params = {
        key: value
        for key, value in (header.get_params() or [])[1:]
        if key in PARAMETERS and isinstance(value, str)
    }
    html = _renderer(RENDERERS.get(kind, "txt"))(text, **params)
    if html is None:
        html = _renderer("txt")(text)
    return Markup(html or "")  # noqa: S704 - cleaned by readme_renderer (nh3)


def _renderer(module: str) -> Renderer:
    return importlib.import_module(f"readme_renderer.{module}").render


class ReadmeCache:
    """Rendered READMEs by content: rendering a long reStructuredText README takes tens of
    milliseconds, and a release's README never changes."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, text: str, content_type: str = "") -> Markup:
        key = hashlib.sha256(f"{content_type}\0{text}".encode()).digest()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        html = render_readme(text, content_type)
        with self._lock:
            self._entries[key] = html
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return html
