"""/account/ tokens: created with the secret shown once, listed, revoked; only your own."""

from __future__ import annotations

import re

from conftest import basic
from web_support import login, post_form

TOKEN_RE = re.compile(r'<pre id="token-secret"><code>(tix_[A-Za-z0-9_-]+)</code></pre>')


def _db(app):
    return app.extensions["teamindex"].db


def _create(client, **fields):
    data = {"scope": "read", "expires": "90d", "note": "laptop", **fields}
    return post_form(client, "/account/tokens", data, page="/account/")


def test_create_token_shows_the_secret_once_and_it_works(client, app):
    login(client, "alice")
    response = _create(client, scope="upload", projects="Team.Demo, team-*", note="CI publish")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = TOKEN_RE.search(response.get_data(as_text=True)).group(1)
    # Never again: not on the next page view, not in the cookie, only its digest stored.
    page = client.get("/account/").get_data(as_text=True)
    assert secret not in page
    assert secret not in (client.get_cookie("teamindex_session").value or "")
    (token,) = _db(app).list_tokens(_db(app).get_user("alice").id)
    assert token.scope == "upload"
    assert token.projects == ("team-demo", "team-*")
    assert token.note == "CI publish"
    assert token.expires is not None
    assert f'data-token-id="{token.id}"' in page
    assert client.get("/simple/", headers=basic("__token__", secret)).status_code == 200
    events = _db(app).query_audit(since="2000", action="token_create")
    assert [(e.user, e.token_id) for e in events] == [("alice", token.id)]


def test_token_that_never_expires_with_ip_list(client, app):
    login(client, "alice")
    response = _create(client, expires="never", allow_ips="10.0.0.0/8 192.168.1.7")
    assert response.status_code == 200
    (token,) = _db(app).list_tokens(_db(app).get_user("alice").id)
    assert token.expires is None
    assert token.allow_ips == ("10.0.0.0/8", "192.168.1.7/32")


def test_bad_token_requests_are_refused(client, app):
    login(client, "alice")
    for fields, message in (
        ({"scope": "admin"}, "scope must be one of"),
        ({"expires": "yesterday"}, "expiry must be like"),
        ({"allow_ips": "not-an-ip"}, "not an IP address"),
    ):
        response = _create(client, **fields)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    assert _db(app).list_tokens() == []


def test_revoke_own_token(client, app):
    login(client, "alice")
    secret = TOKEN_RE.search(_create(client).get_data(as_text=True)).group(1)
    (token,) = _db(app).list_tokens()
    response = post_form(client, f"/account/tokens/{token.id}/revoke", page="/account/")
    assert response.status_code == 303
    page = client.get("/account/").get_data(as_text=True)
    assert f"Token {token.id} revoked." in page
    assert 'class="revoked"' in page
    assert client.get("/simple/", headers=basic("__token__", secret)).status_code == 401
    assert [e.token_id for e in _db(app).query_audit(since="2000", action="token_revoke")] == [
        token.id
    ]


def test_cannot_revoke_someone_elses_token(app):
    alice, bob = app.test_client(), app.test_client()
    login(alice, "alice")
    _create(alice)
    (token,) = _db(app).list_tokens()
    login(bob, "bob")
    response = post_form(bob, f"/account/tokens/{token.id}/revoke", page="/account/")
    assert response.status_code == 404
    assert _db(app).get_token(token.id).revoked is None


def test_tokens_of_others_are_not_listed(app):
    alice, bob = app.test_client(), app.test_client()
    login(alice, "alice")
    _create(alice, note="alice-only-note")
    login(bob, "bob")
    assert "alice-only-note" not in bob.get("/account/").get_data(as_text=True)


def test_token_cannot_manage_the_account(client, app):
    login(client, "alice")
    secret = TOKEN_RE.search(_create(client).get_data(as_text=True)).group(1)
    fresh = app.test_client()
    response = fresh.get("/account/", headers=basic("__token__", secret))
    assert response.status_code == 403
