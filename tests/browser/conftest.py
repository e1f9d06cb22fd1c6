"""Fixtures for browser tests: Debian's headless Chromium driven by Playwright, a live seeded
index, and screenshots under test-artifacts/browser/.

tests/browser is a package for the same reason as tests/e2e: a second top-level `conftest`
module would replace tests/conftest.py in sys.modules. Playwright's own browser download
(`playwright install`) cannot work here, so the browser is /usr/bin/chromium, which
`python3 dev.py test` installs with apt. In CI (CI=true) a missing browser fails the tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from web_support import docs_zip, seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (python3 dev.py test installs it with apt)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def site(live_server: LiveServer, tmp_path: Path) -> LiveServer:
    """The live index with team-demo (README, three versions), other-lib, the restricted
    secret-proj, and docs for team-demo 1.1 whose script probes the sandbox."""
    client = live_server.app.test_client()
    seed(live_server.app, client, tmp_path / "dists")
    from conftest import basic

    response = client.post(
        "/docs/team-demo/1.1/",
        data=docs_zip(BROWSER_DOCS),
        headers=basic("alice"),
        content_type="application/zip",
    )
    assert response.status_code == 200, response.status
    return live_server


# The docs' own script: it must run (allow-scripts), and it must not be able to read the
# index with the viewer's session (opaque origin: no cookie access, no same-origin fetch).
BROWSER_DOCS = {
    "index.html": """<!doctype html><html><head><meta charset="utf-8">
<title>Team Demo docs</title><link rel="stylesheet" href="_static/site.css"></head>
<body><h1 id="title">Team Demo documentation</h1>
<p>Install with pip, then <a href="guide/">read the guide</a>.</p>
<p>Script: <span id="ran">no</span> · cookie: <span id="cookie">?</span>
 · index: <span id="leak">?</span></p>
<script src="_static/site.js"></script></body></html>""",
    "guide/index.html": "<!doctype html><h1 id='guide'>Guide</h1>",
    "_static/site.css": "body { font-family: serif; margin: 2em; } h1 { color: rgb(200, 0, 0); }",
    "_static/site.js": """
document.getElementById("ran").textContent = "yes";
try { document.getElementById("cookie").textContent = "readable:" + document.cookie; }
catch (e) { document.getElementById("cookie").textContent = "blocked"; }
fetch("/account/", {credentials: "include"})
  .then(r => r.text())
  .then(t => { document.getElementById("leak").textContent =
                 /API tokens/.test(t) ? "LEAKED" : "no-access"; })
  .catch(() => { document.getElementById("leak").textContent = "blocked"; });
""",
}


@pytest.fixture
def context(browser: Any, site: LiveServer) -> Iterator[Any]:
    context = browser.new_context(
        base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG under test-artifacts/browser/ (git-ignored) and return it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, user: str = "alice") -> None:
    from conftest import PASSWORD

    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
