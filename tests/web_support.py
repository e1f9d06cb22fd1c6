"""Helpers for the web UI and docs tests: seeded projects, logging in, CSRF tokens, docs zips."""

from __future__ import annotations

import html
import io
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

from builders import make_wheel, metadata_text
from conftest import PASSWORD
from flask import Flask
from flask.testing import FlaskClient
from uploading import upload
from werkzeug.test import TestResponse

README = """# Team Demo

Helpers for **team** projects.

```python
import team_demo
```

<script>document.title = "pwned"</script>
<img src="x" onerror="alert(1)">
[click me](javascript:alert(1))
<a href="javascript:alert(2)">evil link</a>
"""

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SNIPPET_RE = re.compile(r'<pre id="snippet-([a-z]+)"><code>(.*?)</code></pre>', re.S)


def snippets_of(body: str) -> dict[str, str]:
    """tool -> the project page's install snippet as a visitor copies it (unescaped)."""
    return {tool: html.unescape(text) for tool, text in SNIPPET_RE.findall(body)}


def _wheel(tmp: Path, name: str, version: str, **kwargs: object) -> Path:
    description = kwargs.pop("description", "")
    requires = kwargs.pop("requires_dist", ())
    requires_python = kwargs.pop("requires_python", None)
    summary = kwargs.pop("summary", "A test package")
    metadata = metadata_text(
        name,
        version,
        summary=str(summary),
        requires_dist=requires,  # type: ignore[arg-type]
        requires_python=requires_python,  # type: ignore[arg-type]
        description=str(description),
    )
    return make_wheel(tmp, name, version, metadata=metadata)


def seed(app: Flask, client: FlaskClient, tmp: Path) -> None:
    """team-demo 1.0, 1.1 (alice, README, deps), 2.0rc1, other-lib (bob), and the restricted
    secret-proj (bob owns it; alice has no role)."""
    tmp.mkdir(parents=True, exist_ok=True)
    wheels = [
        ("alice", _wheel(tmp, "Team.Demo", "1.0", summary="Old demo")),
        (
            "alice",
            _wheel(
                tmp,
                "Team.Demo",
                "1.1",
                summary="Team demo helpers",
                description=README,
                requires_dist=["other-lib>=1.0", "requests>=2", "secret-proj; extra == 'x'"],
                requires_python=">=3.10",
            ),
        ),
        ("alice", _wheel(tmp, "Team.Demo", "2.0rc1", summary="Next demo")),
        ("bob", _wheel(tmp, "other-lib", "1.0", summary="Bob's library for parsing")),
        ("bob", _wheel(tmp, "secret-proj", "0.1", summary="Top secret")),
    ]
    for user, wheel in wheels:
        response = upload(client, wheel, user)
        assert response.status_code == 200, response.status
    db = app.extensions["teamindex"].db
    assert db.set_visibility("secret-proj", "restricted")


def csrf_of(response: TestResponse) -> str:
    found = CSRF_RE.search(response.get_data(as_text=True))
    assert found, "no CSRF token on the page"
    return found.group(1)


def login(client: FlaskClient, user: str = "alice", password: str = PASSWORD) -> TestResponse:
    token = csrf_of(client.get("/login"))
    response = client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}
    )
    return response


def post_form(
    client: FlaskClient, url: str, data: Mapping[str, str] | None = None, *, page: str = "/"
) -> TestResponse:
    """POST a web form with the session's CSRF token (read from `page`)."""
    token = csrf_of(client.get(page))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def docs_zip(files: Mapping[str, bytes | str] | None = None) -> bytes:
    """A small site: index.html, a page, CSS and JS, unless `files` says otherwise."""
    files = files or {
        "index.html": '<html><head><link rel="stylesheet" href="_static/site.css"></head>'
        '<body><h1 id="t">Demo docs</h1><a href="guide/">Guide</a>'
        '<script src="_static/site.js"></script></body></html>',
        "guide/index.html": "<h1>Guide</h1>",
        "_static/site.css": "h1 { color: rgb(200, 0, 0); }",
        "_static/site.js": "document.getElementById('t').dataset.js = 'ran';",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
