"""Simple-API pages as one dict each, serialized as PEP 503 HTML or PEP 691 JSON. No Flask.

Field rules follow PEP 691/700/714/592 and the strictness of real clients (PROTOCOL.md 3.4,
3.5): `hashes` always present, `size` an integer, `upload-time` ending in "Z", `yanked`
never null or "", and `core-metadata` only where the .metadata file really exists.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

from markupsafe import escape
from packaging.version import Version

from .. import loading
from ..headers import UNSURE, best_match
from ..models import FileRecord

API_VERSION = "1.1"  # PEP 700 fields are implemented; provenance (1.3) is not
# A page that carries upstream's PEP 792 project status says so: status is the 1.4 addition,
# and provenance (1.3) is optional, so such a page implements all that 1.4 requires.
STATUS_API_VERSION = "1.4"

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# Offer order matters: Werkzeug breaks q-value ties by it, so "*/*" gets HTML as on PyPI
# (hatch's existence probe parses HTML).
OFFERS = (TEXT_HTML, HTML_TYPE, JSON_TYPE)
LATEST_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_TYPE,
}


@functools.lru_cache(maxsize=256)
def best_content_type(accept: str) -> str | None:
    """The offer an Accept header prefers (PEP 691): HTML when there is no header, None when
    nothing fits. Cached: every client sends the same few headers, and parsing q-values
    was a tenth of a page request's time."""
    if not accept.strip():
        return TEXT_HTML
    for alias, concrete in LATEST_ALIASES.items():
        accept = accept.replace(alias, concrete)
    best = best_match(accept, OFFERS)
    if best is not UNSURE:
        return best
    # A header outside the simple grammar: werkzeug decides, imported only now so that the
    # first request does not pay for it (issue 14, cold start).
    loading.wait()
    from werkzeug.datastructures import MIMEAccept
    from werkzeug.http import parse_accept_header

    return parse_accept_header(accept, MIMEAccept).best_match(OFFERS)


def mimetype(content_type: str) -> str:
    """The Content-Type header for an offer: text/html says its charset."""
    return content_type + ("; charset=utf-8" if content_type == TEXT_HTML else "")


def file_url(record: FileRecord) -> str:
    """URL of a file relative to its project page (/simple/<project>/), no query string
    (pip and uv append ".metadata" to the URL as given)."""
    return f"../../files/{record.project}/{quote(record.filename)}"


def project_page(
    name: str,
    files: list[FileRecord],
    *,
    upstream: list[tuple[str, dict[str, Any]]] | None = None,
    status: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The PEP 691 project detail dict; the HTML page is rendered from the same dict.
    `upstream`: (version, entry) of proxied files, entries in PEP 691 form with this
    index's URLs;
    `status`: upstream's PEP 792 project status."""
    entries = []
    for record in files:
        entry: dict[str, Any] = {
            "filename": record.filename,
            "url": file_url(record),
            "hashes": {"sha256": record.sha256},
            "size": record.size,
            "upload-time": record.upload_time,
            "yanked": (record.yanked_reason or True) if record.yanked else False,
        }
        if record.requires_python:
            entry["requires-python"] = record.requires_python
        if record.metadata_sha256:
            entry["core-metadata"] = {"sha256": record.metadata_sha256}
        entries.append(entry)
    found = {record.version for record in files}
    for version, entry in upstream or ():
        entries.append(entry)
        found.add(version)
    versions = sorted(found, key=Version)
    page = {
        "meta": {"api-version": API_VERSION},
        "name": name,
        "versions": versions,
        "files": entries,
    }
    if status:
        page["project-status"] = status
        page["meta"]["api-version"] = STATUS_API_VERSION
    return page


def root_page(projects: list[tuple[str, str]]) -> dict[str, Any]:
    """The PEP 691 project list; `_normalized` is private (PEP 700 reserves `_` keys)."""
    return {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": display, "_normalized": name} for name, display in projects],
    }


def to_json(page: dict[str, Any]) -> bytes:
    return json.dumps(page, separators=(",", ":"), ensure_ascii=False).encode()


def project_html(page: dict[str, Any]) -> bytes:
    name = escape(page["name"])
    head = _head(f"Links for {name}", page["meta"]["api-version"])
    status = page.get("project-status")
    if status:  # PEP 792 in HTML: meta tags in the head
        extra = f'<meta name="pypi:project-status" content="{escape(status["status"])}">\n'
        if status.get("reason"):
            reason = escape(status["reason"])
            extra += f'<meta name="pypi:project-status-reason" content="{reason}">\n'
        head = head.replace("<title>", extra + "<title>", 1)
    lines = [head, f"<h1>Links for {name}</h1>"]
    for entry in page["files"]:
        attrs = [f'href="{escape(entry["url"])}#sha256={entry["hashes"]["sha256"]}"']
        if "requires-python" in entry:
            attrs.append(f'data-requires-python="{escape(entry["requires-python"])}"')
        if entry["yanked"] is not False:
            # Always a value: pip ignores a bare data-yanked attribute (PROTOCOL.md 3.4).
            reason = "" if entry["yanked"] is True else entry["yanked"]
            attrs.append(f'data-yanked="{escape(reason)}"')
        if "core-metadata" in entry:
            value = f"sha256={entry['core-metadata']['sha256']}"
            attrs.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
        if "size" in entry:  # upstream pages may lack it (API 1.0): omitted, never null
            attrs.append(f'data-size="{entry["size"]}"')
        if "upload-time" in entry:
            attrs.append(f'data-upload-time="{entry["upload-time"]}"')
        lines.append(f"<a {' '.join(attrs)}>{escape(entry['filename'])}</a><br />")
    lines.append("</body></html>\n")
    return "\n".join(lines).encode()


def root_html(page: dict[str, Any]) -> bytes:
    lines = [_head("Simple index")]
    for project in page["projects"]:
        lines.append(
            f'<a href="{escape(project["_normalized"])}/">{escape(project["name"])}</a><br />'
        )
    lines.append("</body></html>\n")
    return "\n".join(lines).encode()


def _head(title: str, version: str = API_VERSION) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head>\n<meta charset="utf-8">\n'
        f'<meta name="pypi:repository-version" content="{version}">\n'
        f"<title>{title}</title></head>\n<body>"
    )
