"""Logging in with a form: sessions, cookie flags, CSRF, throttling and IP lists, passwords."""

from __future__ import annotations

import io
import stat
from dataclasses import replace

import pytest
from conftest import PASSWORD, add_token, add_user, basic
from web_support import csrf_of, login, post_form

from teamindex.access.sessionkey import SECRET_FILE, load_secret_key
from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.web.session import safe_next


def _db(app):
    return app.extensions["teamindex"].db


def _session_cookie(response) -> str:
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    found = [c for c in cookies if c.startswith("teamindex_session=")]
    assert found, cookies
    return found[-1]


def test_login_sets_a_hardened_session_cookie(client):
    response = login(client, "alice")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert client.get("/").status_code == 200


def test_cookie_is_secure_on_https(client):
    token = csrf_of(client.get("/login", base_url="https://localhost"))
    response = client.post(
        "/login",
        base_url="https://localhost",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 303
    assert "Secure" in _session_cookie(response)


def test_login_returns_to_next_page_but_never_off_site(client):
    token = csrf_of(client.get("/login?next=/account/"))
    response = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/account/"},
    )
    assert response.headers["Location"] == "/account/"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/account/", "/account/"),
        ("/?q=x", "/?q=x"),
        ("https://evil.test/", "/"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("", "/"),
        (None, "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_wrong_password_is_refused_and_audited(client, app):
    response = login(client, "alice", "wrong-password")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    events = _db(app).query_audit(since="2000", action="auth_failed")
    assert [(e.user, e.outcome) for e in events] == [("alice", "denied")]


def test_tokens_are_not_accepted_by_the_login_form(client, app):
    _id, secret = add_token(app, "alice", scope="read")
    response = login(client, "__token__", secret)
    assert response.status_code == 401
    assert "API tokens are for" in response.get_data(as_text=True)


def test_form_logins_are_throttled_like_basic_auth(settings, tmp_path):
    app = create_app(replace(settings, throttle_ip_failures=3))
    add_user(app, "alice")
    client = app.test_client()
    for _ in range(3):
        assert login(client, "alice", "wrong-password").status_code == 401
    blocked = login(client, "alice", PASSWORD)
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"]
    assert blocked.mimetype == "text/html"
    # The same throttle guards Basic auth: one function decides for both.
    assert client.get("/simple/", headers=basic("alice")).status_code == 429
    _db(app).close()


def test_global_allowlist_applies_to_login_and_sessions(client, app):
    assert login(client, "alice").status_code == 303
    _db(app).add_allow("10.0.0.0/8", None, "office", utc_now())
    assert client.get("/").status_code == 403  # the open session is refused too
    fresh = app.test_client()
    assert fresh.get("/login").status_code == 403  # no password oracle for outsiders
    allowed = app.test_client()
    response = allowed.get("/login", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 200


def test_user_allowlist_applies_to_sessions(client, app):
    assert login(client, "alice").status_code == 303
    user = _db(app).get_user("alice")
    _db(app).add_allow("10.0.0.0/8", user.id, "", utc_now())
    response = client.get("/")
    assert response.status_code == 403
    assert "not allowed for this user" in response.status


def test_csrf_token_is_required_on_every_form(client):
    login(client, "alice")
    for url in ("/logout", "/account/tokens", "/account/password", "/login"):
        response = client.post(url, data={"csrf_token": "forged"})
        assert response.status_code == 400, url
        assert "CSRF" in response.get_data(as_text=True)
        missing = client.post(url, data={})
        assert missing.status_code == 400, url
    assert client.get("/").status_code == 200  # still logged in: logout was refused


def test_csrf_token_of_another_session_is_refused(app):
    one, two = app.test_client(), app.test_client()
    login(one, "alice")
    login(two, "alice")
    foreign = csrf_of(one.get("/account/"))
    response = two.post("/account/tokens", data={"csrf_token": foreign, "scope": "read"})
    assert response.status_code == 400


def test_login_form_itself_needs_the_token(client):
    # Login CSRF: a foreign site must not log the victim into the attacker's account.
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400


def test_logout_ends_the_session(client):
    login(client, "alice")
    response = post_form(client, "/logout")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_change_password(client, app):
    login(client, "alice")
    other = app.test_client()
    login(other, "alice")
    new = "a-brand-new-password"
    response = post_form(
        client,
        "/account/password",
        {"current": PASSWORD, "new": new, "repeat": new},
        page="/account/",
    )
    assert response.status_code == 303
    assert "Password changed" in client.get("/account/").get_data(as_text=True)
    # The old password stops working at once, also where it was cached.
    assert client.get("/simple/", headers=basic("alice")).status_code == 401
    assert client.get("/simple/", headers=basic("alice", new)).status_code == 200
    # Other sessions of alice end; this one goes on.
    assert other.get("/").status_code == 302
    events = _db(app).query_audit(since="2000", action="password_change")
    assert [(e.user, e.detail) for e in events] == [("alice", "alice")]


@pytest.mark.parametrize(
    ("current", "new", "repeat", "message"),
    [
        (PASSWORD, "long-enough-1", "long-enough-2", "do not match"),
        ("wrong-password", "long-enough-1", "long-enough-1", "current password is wrong"),
        (PASSWORD, "short", "short", "at least 8"),
    ],
)
def test_change_password_refusals(client, current, new, repeat, message):
    login(client, "alice")
    response = post_form(
        client,
        "/account/password",
        {"current": current, "new": new, "repeat": repeat},
        page="/account/",
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert client.get("/simple/", headers=basic("alice")).status_code == 200


def test_deleted_user_session_ends(client, app):
    login(client, "bob")
    _db(app).delete_user("bob")
    assert client.get("/").status_code == 302


def test_secret_key_is_created_private_and_kept(settings, app):
    path = settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert load_secret_key(settings.data_dir) == first.strip()
    again = create_app(settings)
    assert again.secret_key == app.secret_key
    _db(again).close()


def test_sessions_survive_a_restart(settings, app, client):
    login(client, "alice")
    restarted = create_app(settings)
    other = restarted.test_client()
    cookie = client.get_cookie("teamindex_session")
    other.set_cookie("teamindex_session", cookie.value)
    assert other.get("/").status_code == 200
    _db(restarted).close()


def test_account_needs_a_user(anonymous_settings):
    app = create_app(anonymous_settings)
    client = app.test_client()
    assert client.get("/").status_code == 200
    response = client.get("/account/")
    assert response.status_code == 403
    _db(app).close()


def test_logout_revokes_the_session_cookie_on_the_server(client, app):
    login(client, "alice")
    stolen = client.get_cookie("teamindex_session").value
    assert post_form(client, "/logout").status_code == 303
    replay = app.test_client()
    replay.set_cookie("teamindex_session", stolen)
    assert replay.get("/").status_code == 302  # to the login page
    assert replay.get("/account/").status_code == 302
    # Nor does the copied cookie download anything (downloads read the session too).
    assert replay.get("/files/team-demo/x.whl").status_code == 401


def test_expired_sessions_end_and_are_pruned(client, app):
    login(client, "alice")
    db = _db(app)
    conn = db.conn
    conn.execute("UPDATE sessions SET expires = '2000-01-01T00:00:00.000000Z'")
    assert client.get("/").status_code == 302
    login(app.test_client(), "bob")
    assert [row[0] for row in conn.execute("SELECT user_id FROM sessions")] == [
        db.get_user("bob").id
    ]


def test_sessions_are_held_by_digest_only(client, app):
    login(client, "alice")
    cookie = client.get_cookie("teamindex_session").value
    (digest,) = _db(app).conn.execute("SELECT digest FROM sessions").fetchone()
    assert digest not in cookie and len(digest) == 64


FORM_POSTS = [
    "/login",
    "/logout",
    "/account/password",
    "/account/tokens",
    "/admin/users",
    "/admin/grants",
    "/admin/allowlists",
    "/admin/throttle/clear",
    "/admin/project/pub/visibility",
]


@pytest.mark.parametrize("path", FORM_POSTS)
@pytest.mark.parametrize("who", ["outsider", "admin"])
def test_web_forms_refuse_multipart_before_parsing_it(app, client, monkeypatch, path, who):
    """No page form sends files; an outsider's multipart POST was parsed (file parts
    written to temp files) by the CSRF check before the viewer was known (review of issue
    10, medium 4). Now it is 415 before anything reads the body, for anyone."""
    from flask import Request

    if who == "admin":
        login(client, "root")

    def no_parsing(*_args, **_kwargs):
        raise AssertionError("the multipart form was parsed")

    monkeypatch.setattr(Request, "_get_file_stream", no_parsing)
    monkeypatch.setattr(Request, "_load_form_data", no_parsing)
    data = {"csrf_token": "x", "all": "yes", "content": (io.BytesIO(b"x" * 10_000), "a.zip")}
    response = client.post(path, data=data, content_type="multipart/form-data")
    assert response.status == (
        "415 Web forms send no files; upload with a tool to /legacy/ or /docs/."
    )
