"""README rendering as on PyPI: readme_renderer picks Markdown, reStructuredText or plain
text from Description-Content-Type and cleans the HTML with nh3 (no scripts, no event
handlers, no javascript: links), so a README cannot run code in a viewer's session.

Images from other hosts are, by default, turned into links: an <img> loads as soon as a
teammate opens the page, so an uploader could learn who reads which private project, when
and from where (a tracking pixel). `--readme-external-images` lets them load (badges)."""

from __future__ import annotations

import hashlib
import html as htmllib
import importlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from email.message import Message
from html.parser import HTMLParser

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
IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
# A URL the browser would fetch from elsewhere: any scheme but data:, or scheme-relative.
EXTERNAL_URL = re.compile(r"^\s*(//|(?!data:)[a-z][a-z0-9+.-]*:)", re.IGNORECASE)


class _Attributes(HTMLParser):
    """The attributes of the one tag fed to it (nh3's output is well formed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found = {key: value or "" for key, value in attrs}

    handle_startendtag = handle_starttag


def _img_as_link(match: re.Match[str]) -> str:
    parser = _Attributes()
    parser.feed(match.group(0))
    src = parser.found.get("src", "")
    if not EXTERNAL_URL.match(src):
        return match.group(0)
    label = parser.found.get("alt", "").strip() or "image"
    return (
        f'<a href="{htmllib.escape(src)}" rel="nofollow noopener noreferrer">'
        f"[{htmllib.escape(label)}]</a>"
    )


def link_external_images(html: str) -> str:
    """Every <img> whose source is on another host becomes a link to it, labelled with its
    alt text: nothing loads until the reader chooses to follow it."""
    return IMG_TAG.sub(_img_as_link, html)


def render_readme(text: str, content_type: str = "", external_images: bool = False) -> Markup:
    """The README as safe HTML; reStructuredText that fails to render falls back to text.
    External images stay images only when `external_images` (see the module docstring)."""
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
    if not external_images:
        html = link_external_images(html or "")
    return Markup(html or "")  # noqa: S704 - cleaned by readme_renderer (nh3)


def _renderer(module: str) -> Renderer:
    return importlib.import_module(f"readme_renderer.{module}").render


class ReadmeCache:
    """Rendered READMEs by content: rendering a long reStructuredText README takes tens of
    milliseconds, and a release's README never changes."""

    def __init__(self, max_entries: int = 64, external_images: bool = False) -> None:
        self.max_entries = max_entries
        self.external_images = external_images
        self._entries: OrderedDict[bytes, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, text: str, content_type: str = "") -> Markup:
        key = hashlib.sha256(f"{content_type}\0{text}".encode()).digest()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        html = render_readme(text, content_type, self.external_images)
        with self._lock:
            self._entries[key] = html
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return html
