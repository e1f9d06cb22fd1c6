"""The web UI in a real browser (headless Chromium): log in, search, open a project, copy
the install snippet, create and revoke a token, read hosted docs, work without JavaScript."""

from __future__ import annotations

import urllib.error
import urllib.request
from base64 import b64encode
from typing import Any

import pytest
from conftest import PASSWORD, LiveServer
from playwright.sync_api import expect

from teamindex.web.pages import install_snippets

from .conftest import log_in, screenshot


def _status(url: str, user: str, password: str) -> int:
    request = urllib.request.Request(url)
    credentials = b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_login_search_project_and_copy_snippet(page: Any, site: LiveServer) -> None:
    page.goto("/")
    assert "/login" in page.url  # not logged in: the login form first
    screenshot(page, "01-login")
    log_in(page, "alice")
    page.wait_for_url(f"{site.url}/")
    names = page.locator("ul.projects a.name").all_inner_texts()
    assert names == ["other-lib", "Team.Demo"]  # secret-proj is restricted: invisible
    screenshot(page, "02-projects")

    page.fill("input[name=q]", "helpers")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=helpers")
    assert page.locator("ul.projects a.name").all_inner_texts() == ["Team.Demo"]
    page.click("text=Team.Demo")
    page.wait_for_url("**/project/team-demo/")
    assert page.locator("h1").first.inner_text().startswith("Team.Demo 1.1")
    assert page.title() == "Team.Demo · teamindex"  # the README's script never ran
    assert page.locator(".readme strong").inner_text() == "team"
    assert page.locator(".readme script").count() == 0
    screenshot(page, "03-project")

    index_url = f"{site.url}/simple/"
    # team-demo needs other-lib, also here: the snippets name both (issue 12).
    expected = dict(install_snippets(index_url, ["team-demo", "other-lib"]))
    pip = page.locator("[data-tool=pip] pre").inner_text().strip()
    assert pip == expected["pip"]
    copy = page.locator("[data-tool=pip] button.copy")
    assert copy.is_visible()  # shown by the script; hidden without JavaScript
    copy.click()
    expect(copy).to_have_text("Copied")  # the clipboard write is async: wait for it
    assert page.evaluate("navigator.clipboard.readText()") == pip
    page.locator("[data-tool=poetry] button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == expected["poetry"]
    # Dependencies: the private one is a link that opens its page.
    page.click("a.private")
    page.wait_for_url("**/project/other-lib/")


def test_create_and_revoke_a_token(page: Any, site: LiveServer) -> None:
    log_in(page, "alice")
    page.wait_for_url(f"{site.url}/")
    page.click("header >> text=Account")
    page.wait_for_url("**/account/")
    page.select_option("select[name=scope]", "upload")
    page.fill("input[name=note]", "CI publish")
    page.click("text=Create token")
    secret = page.locator("#token-secret").inner_text().strip()
    assert secret.startswith("tix_")
    page.locator("#new-token button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "04-token-created")
    simple = f"{site.url}/simple/"
    assert _status(simple, "__token__", secret) == 200

    page.goto("/account/")  # the secret is never shown again
    assert page.locator("#token-secret").count() == 0
    row = page.locator("tr", has_text="CI publish")
    assert "upload" in row.inner_text()
    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector("p.flash")
    assert "revoked" in page.locator("p.flash").inner_text()
    assert page.locator("tr.revoked", has_text="CI publish").count() == 1
    screenshot(page, "05-token-revoked")
    assert _status(simple, "__token__", secret) == 401


def test_hosted_docs_are_sandboxed(page: Any, site: LiveServer) -> None:
    log_in(page, "alice")
    page.wait_for_url(f"{site.url}/")
    page.goto("/project/team-demo/")
    page.click("a.docs-link")
    page.wait_for_selector("#title")
    assert "/_docs/" in page.url and page.url.endswith("/team-demo/1.1/")
    # The site's own CSS and JS load (through the capability URL, no cookie needed) ...
    assert page.eval_on_selector("#title", "e => getComputedStyle(e).color") == "rgb(200, 0, 0)"
    expect(page.locator("#leak")).not_to_have_text("?")  # no eval: the page's CSP forbids it
    assert page.inner_text("#ran") == "yes"
    # ... but it runs in an opaque origin: no cookie, no reading the index as the viewer.
    assert page.inner_text("#cookie") == "blocked"
    assert page.inner_text("#leak") == "blocked"
    screenshot(page, "06-docs")
    page.click("text=read the guide")
    page.wait_for_selector("#guide")
    assert page.url.endswith("/team-demo/1.1/guide/")


def test_restricted_docs_and_pages_are_not_found(page: Any, site: LiveServer) -> None:
    log_in(page, "alice")
    page.wait_for_url(f"{site.url}/")
    response = page.goto("/project/secret-proj/")
    assert response is not None and response.status == 404
    screenshot(page, "07-not-found")


def test_admin_yanks_with_confirmation(page: Any, site: LiveServer) -> None:
    log_in(page, "root")
    page.wait_for_url(f"{site.url}/")
    page.goto("/admin/project/team-demo/")
    release = page.locator("section.release", has_text="1.1")
    release.locator("input[name=reason]").fill("broken wheel")
    release.locator("button", has_text="Yank").click()
    page.wait_for_selector("text=Yank team-demo 1.1?")
    screenshot(page, "08-confirm-yank")
    page.click("text=Yes, do it")
    page.wait_for_selector("p.flash")
    page.goto("/project/team-demo/")
    assert page.locator("h1 .version").inner_text() == "1.0"  # latest non-yanked
    assert "broken wheel" in page.locator("ul.releases").inner_text()


@pytest.mark.parametrize("javascript", [False])
def test_works_without_javascript(browser: Any, site: LiveServer, javascript: bool) -> None:
    context = browser.new_context(base_url=site.url, java_script_enabled=javascript)
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{site.url}/")
        assert "secret-proj" in page.locator("ul.projects").inner_text()
        page.goto("/project/team-demo/")
        assert page.locator("[data-tool=pip] button.copy").is_hidden()
        assert "pip install" in page.locator("[data-tool=pip] pre").inner_text()
        page.locator("header button", has_text="Log out").click()
        page.wait_for_url("**/login")
    finally:
        context.close()
