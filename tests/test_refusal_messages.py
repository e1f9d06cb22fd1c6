"""Refusals blame what refuses: a token's scope or project list is named as the token's, with
the way out; a user's missing role stays the user's (issue 12). Statuses are asserted in
test_access_matrix.py; this file checks the words, and that a token-limit message is the
same whether the project outside the token exists, is restricted or is free (issue 10)."""

from __future__ import annotations

import html

import pytest
from builders import make_wheel
from conftest import add_token, basic
from uploading import upload

from teamindex.access.permissions import Action, Principal, scope_refusal, token_limit
from teamindex.models import Token, User


@pytest.fixture
def seeded(app, client, tmp_path):
    """attrs (alice's, team-visible), hush (alice's, restricted), acme-core (alice's)."""
    for name in ("attrs", "hush", "acme-core"):
        assert upload(client, make_wheel(tmp_path, name, "1.0"), "alice").status_code == 200
    assert app.extensions["teamindex"].db.set_visibility("hush", "restricted")
    return client


def _answer(client, method, path, headers, **kwargs):
    response = client.open(path, method=method, headers=headers, **kwargs)
    return response.status, response.get_data()


LIMIT = "404 This token (id {id}) is limited to projects acme-*; 'attrs' is outside it."
SCOPE = (
    "403 This token (id {id}, scope read) cannot yank: no token can;"
    " use your user name and password."
)
# A file URL names a file, which the token's holder cannot know exists: it stays "no file".
NO_FILE = "404 No file named 'attrs-1.0-py3-none-any.whl' in project 'attrs'."


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/simple/{n}/", LIMIT),
        ("GET", "/legacy/+simple/{n}/", LIMIT),
        ("GET", "/project/{n}/", LIMIT),
        ("GET", "/files/{n}/{n}-1.0-py3-none-any.whl", NO_FILE),
        ("POST", "/api/{n}/1.0/yank", SCOPE),  # a read token cannot yank at all
    ],
)
def test_a_project_limited_token_names_its_limit(seeded, app, method, path, expected):
    token_id, secret = add_token(app, "alice", scope="read", projects=["acme-*"])
    headers = basic("__token__", secret)
    answers = {
        name: _answer(seeded, method, path.format(n=name), headers)
        for name in ("attrs", "hush", "nothing-here")
    }
    status, body = answers["attrs"]
    assert status == expected.format(id=token_id)
    assert status.split(" ", 1)[1] in html.unescape(body.decode())  # plain text, or the page
    # The same words for a restricted and a missing project, the name swapped back.
    for name in ("hush", "nothing-here"):
        other_status, other_body = answers[name]
        assert other_status.replace(name, "attrs") == status
        assert other_body.replace(name.encode(), b"attrs") == body


def test_an_upload_token_outside_its_projects(seeded, app, tmp_path):
    token_id, secret = add_token(app, "alice", scope="upload", projects=["acme-*"])
    statuses = {}
    for name in ("attrs", "hush", "nothing-here"):
        wheel = make_wheel(tmp_path, name, "2.0")
        response = upload(seeded, wheel, None, headers=basic("__token__", secret))
        statuses[name] = response.status.replace(name, "NAME")
    assert set(statuses.values()) == {
        f"403 This token (id {token_id}) is limited to projects acme-*; 'NAME' is outside it."
    }
    wheel = make_wheel(tmp_path, "acme-core", "2.0")
    assert upload(seeded, wheel, None, headers=basic("__token__", secret)).status_code == 200


def test_a_token_yanking_is_told_to_use_the_password(seeded, app):
    token_id, secret = add_token(app, "alice", scope="upload")
    response = seeded.post("/api/attrs/1.0/yank", headers=basic("__token__", secret))
    assert response.status == (
        f"403 This token (id {token_id}, scope upload) cannot yank: no token can;"
        " use your user name and password."
    )
    assert seeded.post("/api/attrs/1.0/yank", headers=basic("alice")).status_code == 200


def test_a_user_without_a_role_is_still_the_user(seeded, tmp_path):
    response = seeded.post("/api/attrs/1.0/yank", headers=basic("bob"))
    assert response.status == "403 The user 'bob' isn't allowed to yank project 'attrs'."
    response = upload(seeded, make_wheel(tmp_path, "attrs", "3.0"), "bob")
    assert response.status == "403 The user 'bob' isn't allowed to upload to project 'attrs'."


USER = User(id=1, name="carol", password_hash="", is_admin=False)


def _token(scope: str, projects: tuple[str, ...] = ()) -> Token:
    return Token(9, 1, scope, projects, (), "", "2026-01-01", None, None)


@pytest.mark.parametrize(
    ("scope", "projects", "action", "name", "expected"),
    [
        ("read", (), Action.READ, "x", None),
        ("read", (), Action.UPLOAD, "x", "scope read) cannot upload; create a token"),
        ("upload", (), Action.UPLOAD, "x", None),
        ("upload", (), Action.YANK, "x", "cannot yank: no token can"),
        ("upload", ("a-*",), Action.UPLOAD, "a-b", None),
        ("upload", ("a-*",), Action.UPLOAD, "b", "limited to projects a-*; 'b' is outside"),
        ("read", ("a", "c"), Action.READ, "b", "limited to projects a, c; 'b' is outside"),
    ],
)
def test_token_limit_table(scope, projects, action, name, expected):
    found = token_limit(Principal(USER, _token(scope, projects)), action, name)
    assert (found is None) if expected is None else (expected in (found or ""))
    assert token_limit(Principal(USER), action, name) is None  # no token: nothing to blame


def test_scope_refusal_names_the_command():
    assert scope_refusal(_token("read"), Action.UPLOAD, "carol").endswith(
        "teamindex token create carol --scope upload"
    )
