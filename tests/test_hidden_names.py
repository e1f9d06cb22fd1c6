"""A restricted project is indistinguishable from a missing one (issue 10, medium 5).

One property over every route that takes a project name: for each outsider credential
shape and each spelling of the name, the answer about the restricted `top-secret` is
byte for byte the answer about the free `top-sekret` (same length, so even Content-Length
must agree), once the one differing letter is swapped back. Outsiders: a user with no role
(password, read token, upload token), the owner's and an admin's tokens limited to another
project, a revoked token, and the anonymous reader of an index with anonymous read.

Left out on purpose: a *valid* upload to a free name creates the project, which a hidden
name cannot allow; every answer up to that point (a broken file: 400) is compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from builders import make_wheel
from conftest import FAST_HASH, USERS, add_token, add_user, basic
from uploading import encode_multipart, upload, upload_fields
from web_support import CSRF_RE, docs_zip

from teamindex.api.render import JSON_TYPE
from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.config import Settings

HIDDEN, FREE = "top-secret", "top-sekret"
SPELLINGS: dict[str, Callable[[str], str]] = {
    "normalized": lambda name: name,
    "title_underscore": lambda name: name.replace("-", "_").title(),
    "upper_dots": lambda name: name.replace("-", ".").upper(),
    "double_dash": lambda name: name.replace("-", "--"),
}
CREDENTIALS = (
    "password-no-role",
    "token-read",
    "token-upload",
    "owner-token-other-project",
    "admin-token-other-project",
    "token-revoked",
    "anonymous",
)
JUNK = b"not a distribution at all"


def _docs() -> bytes:
    return docs_zip()


# (method, path, request keyword arguments) per route; {n} is the name as spelled.
ROUTES: dict[str, Callable[[str], tuple[str, str, dict]]] = {
    "simple-html": lambda n: ("GET", f"/simple/{n}/", {}),
    "simple-json": lambda n: ("GET", f"/simple/{n}/", {"headers": {"Accept": JSON_TYPE}}),
    "simple-format": lambda n: ("GET", f"/simple/{n}/?format={JSON_TYPE}", {}),
    "devpi-simple": lambda n: ("GET", f"/legacy/+simple/{n}/", {}),
    "pypi-json": lambda n: ("GET", f"/pypi/{n}/json", {}),
    "pypi-json-version": lambda n: ("GET", f"/pypi/{n}/1.0/json", {}),
    "pypi-json-other-version": lambda n: ("GET", f"/pypi/{n}/1.0.0/json", {}),
    "file": lambda n: ("GET", f"/files/{n}/{_stem(n)}-1.0-py3-none-any.whl", {}),
    "metadata": lambda n: ("GET", f"/files/{n}/{_stem(n)}-1.0-py3-none-any.whl.metadata", {}),
    "upload-broken": lambda n: _broken_upload(n),
    "docs-upload": lambda n: ("POST", f"/docs/{n}/1.0/", {"data": _docs()}),
    "docs-entry": lambda n: ("GET", f"/docs/{n}/1.0/", {}),
    "docs-latest": lambda n: ("GET", f"/docs/{n}/latest/index.html", {}),
    "yank": lambda n: ("POST", f"/api/{n}/1.0/yank", {"data": {"reason": "x"}}),
    "unyank": lambda n: ("POST", f"/api/{n}/1.0/unyank", {}),
    "web-project": lambda n: ("GET", f"/project/{n}/", {}),
    "web-search": lambda n: ("GET", f"/?q={n}", {}),
}


def _stem(name: str) -> str:
    """The wheel filename's name part for the normalized name (PEP 427 escaping)."""
    return name.lower().replace(".", "-").replace("--", "-").replace("-", "_")


def _broken_upload(name: str) -> tuple[str, str, dict]:
    body, content_type = encode_multipart(upload_fields(JUNK), (f"{name}-1.0.tar.gz", JUNK, None))
    return "POST", "/legacy/", {"data": body, "content_type": content_type}


# Who may create projects (serve --new-projects): under "admins" (and a prefix the names do
# not match) an outsider's upload to a hidden name must be refused like one to a free name.
POLICIES = ("anyone", "admins", "prefix:acme-")


@pytest.fixture(scope="module", params=POLICIES)
def index(request, tmp_path_factory):
    """An index with anonymous read, the restricted top-secret 1.0 (bob owns it, with a
    docs build) and the team project pub; the credentials of every outsider shape."""
    root = tmp_path_factory.mktemp("hidden")
    settings = Settings(
        data_dir=root / "data",
        password_hash=FAST_HASH,
        anonymous_read=True,
        new_projects=request.param,
    )
    app = create_app(dataclasses.replace(settings, throttle_ip_failures=10**6))
    app.config["TESTING"] = True
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    client = app.test_client()
    db = app.extensions["teamindex"].db
    for project, owner in ((HIDDEN, "bob"), ("pub", "alice")):
        reserved = db.create_project(project, project, "team", utc_now())
        db.set_role(db.get_user(owner).id, reserved.id, "owner")
        wheel = make_wheel(root, project, "1.0")
        assert upload(client, wheel, owner).status_code == 200
    assert db.set_visibility(HIDDEN, "restricted")
    docs = client.post(f"/docs/{HIDDEN}/1.0/", data=_docs(), headers=basic("bob"))
    assert docs.status_code == 200, docs.status
    revoked_id, revoked = add_token(app, "alice")
    db.revoke_token(revoked_id, "2020-01-01T00:00:00Z")
    token = {
        "token-read": add_token(app, "alice", scope="read")[1],
        "token-upload": add_token(app, "alice")[1],
        "owner-token-other-project": add_token(app, "bob", projects=["pub"])[1],
        "admin-token-other-project": add_token(app, "root", projects=["pub"])[1],
        "token-revoked": revoked,
    }
    headers = {"password-no-role": basic("alice"), "anonymous": {}}
    headers |= {shape: basic("__token__", secret) for shape, secret in token.items()}
    return app, headers


def _answer(app, route: str, name: str, headers: dict[str, str]) -> tuple:
    method, path, kwargs = ROUTES[route](name)
    kwargs = dict(kwargs)
    kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    response = app.test_client().open(path, method=method, **kwargs)
    body = CSRF_RE.sub("csrf", response.get_data(as_text=True))
    response.close()
    kept = sorted((k, v) for k, v in response.headers.items() if k not in {"Set-Cookie", "Date"})
    return response.status, kept, body


def _as_hidden(answer: tuple) -> tuple:
    """The free name's answer with its one differing letter swapped back."""

    def swap(text: str) -> str:
        for free, hidden in (("sekret", "secret"), ("SEKRET", "SECRET"), ("Sekret", "Secret")):
            text = text.replace(free, hidden)
        return text

    status, headers, body = answer
    return swap(status), [(k, swap(v)) for k, v in headers], swap(body)


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("route", ROUTES)
def test_hidden_and_missing_names_answer_alike(index, route, credential, spelling):
    app, headers = index
    spell = SPELLINGS[spelling]
    hidden = _answer(app, route, spell(HIDDEN), headers[credential])
    free = _answer(app, route, spell(FREE), headers[credential])
    assert hidden == _as_hidden(free)
    # Refused (the search page lists neither), never served, never a server error.
    assert route == "web-search" or not hidden[0].startswith(("200", "5")), hidden[0]


def test_the_property_can_tell_a_visible_project(index):
    """The comparison is not vacuous: the owner does get a different answer."""
    app, _headers = index
    seen = _answer(app, "simple-html", HIDDEN, basic("bob"))
    assert seen != _as_hidden(_answer(app, "simple-html", FREE, basic("bob")))
