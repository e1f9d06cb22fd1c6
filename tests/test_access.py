"""Access control beyond the matrix: pure rules, IP lists, proxies, throttling, tokens, audit."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from builders import make_wheel
from conftest import PASSWORD, add_token, add_user, basic, start_server
from pg_support import another_database
from uploading import upload
from web_support import CSRF_RE, csrf_of, docs_zip, login

from teamindex.access.auth import (
    AuthError,
    UsageRecorder,
    looks_like_token,
    new_token_secret,
    parse_expiry,
    token_digest,
    token_expired,
)
from teamindex.access.netrules import Throttle, ThrottlePolicy, ip_allowed, parse_cidr
from teamindex.access.permissions import (
    Action,
    Decision,
    Principal,
    ProjectFacts,
    decide,
    token_covers,
)
from teamindex.app import create_app
from teamindex.cli import main
from teamindex.clock import utc_now, utc_stamp
from teamindex.db import Database
from teamindex.models import Token, User

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _user(name: str = "u", admin: bool = False) -> User:
    return User(1, name, "hash", admin)


def _token(scope: str = "upload", projects: tuple[str, ...] = ()) -> Token:
    return Token(1, 1, scope, projects, (), "", "", None, None)


# -- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "admin", "action", "want"),
    [
        ("owner", False, Action.YANK, Decision.ALLOW),
        ("maintainer", False, Action.YANK, Decision.ALLOW),
        ("reader", False, Action.YANK, Decision.DENY),
        (None, False, Action.YANK, Decision.DENY),
        ("owner", False, Action.DELETE, Decision.DENY),  # delete is for admins
        (None, True, Action.DELETE, Decision.ALLOW),
        ("owner", False, Action.MANAGE, Decision.ALLOW),
        ("maintainer", False, Action.MANAGE, Decision.DENY),
        ("reader", False, Action.UPLOAD, Decision.DENY),
    ],
)
def test_role_actions(role, admin, action, want):
    facts = ProjectFacts("p", exists=True, visibility="team", role=role)
    assert decide(Principal(_user(admin=admin)), action, facts) is want


@pytest.mark.parametrize(
    ("principal", "action", "facts", "want"),
    [
        # a new name: any user may upload and becomes owner; nobody may yank it
        (Principal(_user()), Action.UPLOAD, ProjectFacts("new", exists=False), Decision.ALLOW),
        (Principal(_user()), Action.YANK, ProjectFacts("new", exists=False), Decision.HIDE),
        (Principal(_user()), Action.READ, ProjectFacts("new", exists=False), Decision.HIDE),
        # anonymous readers (when allowed at all) read team projects, never write
        (Principal(None), Action.READ, ProjectFacts("p", exists=True), Decision.ALLOW),
        (Principal(None), Action.UPLOAD, ProjectFacts("p", exists=True), Decision.DENY),
        (Principal(None), Action.UPLOAD, ProjectFacts("new", exists=False), Decision.DENY),
        (
            Principal(None),
            Action.READ,
            ProjectFacts("p", exists=True, visibility="restricted"),
            Decision.HIDE,
        ),
        # a token never widens: an admin's read token cannot upload
        (
            Principal(_user(admin=True), _token("read")),
            Action.UPLOAD,
            ProjectFacts("p", exists=True),
            Decision.DENY,
        ),
        # a token for other projects cannot create this one either
        (
            Principal(_user(), _token("upload", ("team-*",))),
            Action.UPLOAD,
            ProjectFacts("other", exists=False),
            Decision.DENY,
        ),
        (
            Principal(_user(), _token("upload", ("team-*",))),
            Action.UPLOAD,
            ProjectFacts("team-new", exists=False),
            Decision.ALLOW,
        ),
    ],
)
def test_decide_table(principal, action, facts, want):
    assert decide(principal, action, facts) is want


@pytest.mark.parametrize(
    ("patterns", "project", "covered"),
    [
        ((), "anything", True),
        (("team-*",), "team-api", True),
        (("team-*",), "teamapi", False),
        (("lib", "app"), "app", True),
        (("lib",), "lib-extra", False),
    ],
)
def test_token_covers(patterns, project, covered):
    assert token_covers(_token(projects=patterns), project) is covered


@pytest.mark.parametrize(
    ("ip", "cidrs", "allowed"),
    [
        ("10.1.2.3", [], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("11.1.2.3", ["10.0.0.0/8"], False),
        ("192.0.2.1", ["192.0.2.1"], True),
        ("::1", ["::1/128"], True),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("2001:db9::5", ["2001:db8::/32"], False),
        ("::ffff:10.0.0.1", ["10.0.0.0/8"], True),  # IPv4-mapped IPv6
        ("10.0.0.1", ["2001:db8::/32"], False),
        ("not-an-ip", ["10.0.0.0/8"], False),
    ],
)
def test_ip_allowed(ip, cidrs, allowed):
    assert ip_allowed(ip, cidrs) is allowed


def test_parse_cidr_rejects_garbage():
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        parse_cidr("10.0.0.0/33")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path) -> Database:
    """The throttle's real store: a migrated database of its own."""
    db = Database(tmp_path / "throttle.sqlite3")
    db.migrate()
    return db


def test_throttle_blocks_then_lifts(store):
    clock = FakeClock()
    throttle = Throttle(
        ThrottlePolicy(ip_failures=3, user_failures=5, window=60, cooldown=30), store, clock
    )
    assert throttle.retry_after("1.1.1.1", "eve") == 0
    assert not throttle.failure("1.1.1.1", "eve")
    assert not throttle.failure("1.1.1.1", "eve")
    assert throttle.failure("1.1.1.1", "eve") == [("address", "1.1.1.1")]  # the third blocks
    assert throttle.retry_after("1.1.1.1", "eve") == 30
    assert throttle.retry_after("1.1.1.1", "alice") == 30  # the address is blocked
    assert throttle.retry_after("2.2.2.2", "alice") == 0  # other addresses are not
    clock.now += 31
    assert throttle.retry_after("1.1.1.1", "eve") == 0


def test_user_block_spares_known_good_addresses(store):
    clock = FakeClock()
    throttle = Throttle(
        ThrottlePolicy(ip_failures=100, user_failures=3, window=60, cooldown=30), store, clock
    )
    throttle.success("10.0.0.5", "alice")  # alice's own machine
    for attacker in ("6.6.6.1", "6.6.6.2", "6.6.6.3"):
        throttle.failure(attacker, "alice")
    assert throttle.retry_after("6.6.6.9", "alice") == 30
    assert throttle.retry_after("10.0.0.5", "alice") == 0


def test_failures_outside_the_window_do_not_count(store):
    clock = FakeClock()
    throttle = Throttle(ThrottlePolicy(ip_failures=2, window=10, cooldown=10), store, clock)
    throttle.failure("1.1.1.1", None)
    clock.now += 11
    assert not throttle.failure("1.1.1.1", None)
    assert throttle.retry_after("1.1.1.1", None) == 0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("never", None),
        ("90d", "2027-02-23T12:00:00.000000Z"),
        ("12h", "2026-11-26T00:00:00.000000Z"),
        ("2027-01-31", "2027-01-31T00:00:00.000000Z"),
    ],
)
def test_parse_expiry(text, want):
    assert parse_expiry(text, NOW) == want


@pytest.mark.parametrize("text", ["yesterday", "2020-01-01", "-5d"])
def test_parse_expiry_refuses(text):
    with pytest.raises(AuthError):
        parse_expiry(text, NOW)


def test_token_secrets():
    secret = new_token_secret()
    assert looks_like_token(secret) and len(secret) > 40
    assert new_token_secret() != secret
    assert token_digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert token_expired("2026-11-25T11:59:59.000000Z", NOW)
    assert not token_expired("2026-11-25T12:00:01.000000Z", NOW)
    assert not token_expired(None, NOW)


def test_usage_recorder_writes_at_most_once_per_interval():
    writes = []
    recorder = UsageRecorder(lambda *args: writes.append(args), interval=3600)
    recorder.touch(1, "10.0.0.1")
    recorder.touch(1, "10.0.0.1")
    recorder.touch(2, "10.0.0.1")
    recorder.touch(1, "10.0.0.2")  # a new address is worth a write
    assert [(w[0], w[2]) for w in writes] == [(1, "10.0.0.1"), (2, "10.0.0.1"), (1, "10.0.0.2")]


# -- routes ---------------------------------------------------------------------------------


def test_token_with_owner_name_or_token_user(client, app):
    _id, secret = add_token(app, "alice")
    assert client.get("/simple/", headers=basic("__token__", secret)).status_code == 200
    assert client.get("/simple/", headers=basic("alice", secret)).status_code == 200
    assert client.get("/simple/", headers=basic("bob", secret)).status_code == 401


def test_user_allowlist(client, app):
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", db.get_user("alice").id, "", utc_now())
    inside = {"REMOTE_ADDR": "10.9.9.9"}
    outside = {"REMOTE_ADDR": "192.0.2.9"}
    assert client.get("/simple/", headers=basic("alice"), environ_base=inside).status_code == 200
    # From outside her list, alice's password fails like a wrong one (see the oracle test).
    response = client.get("/simple/", headers=basic("alice"), environ_base=outside)
    assert response.status_code == 401
    # other users are not affected by alice's list
    assert client.get("/simple/", headers=basic("bob"), environ_base=outside).status_code == 200


def _answer(response, echoed: str = "") -> tuple[str, dict[str, str], str]:
    """What an outsider sees of a response: status line, headers, body (aside from a login
    page's per-session CSRF token and the user name it echoes into its form)."""
    body = CSRF_RE.sub("csrf", response.get_data(as_text=True))
    if echoed:
        body = body.replace(f'value="{echoed}"', 'value="typed"')
    ignored = {"Set-Cookie", "Date", "Content-Length"}
    headers = {k: v for k, v in response.headers.items() if k not in ignored}
    return response.status, headers, body


def test_user_allowlist_is_no_password_oracle(client, app):
    """From outside alice's own list, her right password, a wrong one and a name nobody has
    get one answer on every way in: Basic auth on the API and on the pages, and the login
    form (issue 10, item 11)."""
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", db.get_user("alice").id, "", utc_now())
    outside = {"REMOTE_ADDR": "192.0.2.9"}
    shapes = {
        "right": ("alice", PASSWORD),
        "wrong": ("alice", "wrong-password"),
        "other case": ("ALICE", PASSWORD),
        "unknown": ("nobody-here", PASSWORD),
    }
    ways = {
        "api": lambda user, password: client.get(
            "/simple/", headers=basic(user, password), environ_base=outside
        ),
        "page": lambda user, password: client.get(
            "/", headers=basic(user, password), environ_base=outside
        ),
        "form": lambda user, password: _form_login(app, user, password, outside),
    }
    for way, send in ways.items():
        answers = {shape: _answer(send(*creds), creds[0]) for shape, creds in shapes.items()}
        assert answers["right"][0].startswith("401"), (way, answers["right"][0])
        assert len(set(map(repr, answers.values()))) == 1, (way, answers)
    events = db.query_audit(since="2000", action="ip_denied")
    assert {e.user.lower() for e in events} == {"alice"}


def _form_login(app, user: str, password: str, environ: dict[str, str]):
    form = app.test_client()
    token = csrf_of(form.get("/login", environ_base=environ))
    return form.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token},
        environ_base=environ,
    )


def test_token_allowlists_answer_403_only_to_the_right_secret(client, app):
    db = app.extensions["teamindex"].db
    _id, secret = add_token(app, "alice", allow_ips=["127.0.0.0/8"])
    _id, bob_secret = add_token(app, "bob")
    db.add_allow("127.0.0.0/8", db.get_user("bob").id, "", utc_now())
    outside = {"REMOTE_ADDR": "10.0.0.1"}

    def get(user: str, secret: str):
        return client.get("/simple/", headers=basic(user, secret), environ_base=outside)

    assert get("__token__", secret).status == (
        "403 Access from 10.0.0.1 is not allowed for this token."
    )
    assert get("__token__", bob_secret).status == (
        "403 Access from 10.0.0.1 is not allowed for this user."
    )
    wrong = _answer(get("__token__", new_token_secret()))
    assert wrong[0].startswith("401")
    for user, guess in (("alice", new_token_secret()), ("__token__", secret[:-2] + "xx")):
        assert _answer(get(user, guess)) == wrong


def test_token_allowlist(client, app):
    _id, secret = add_token(app, "alice", allow_ips=["127.0.0.0/8"])
    headers = basic("__token__", secret)
    ok = client.get("/simple/", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert ok.status_code == 200
    denied = client.get("/simple/", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert denied.status == "403 Access from 10.0.0.1 is not allowed for this token."
    # the same user's password is not bound to the token's list
    assert (
        client.get(
            "/simple/", headers=basic("alice"), environ_base={"REMOTE_ADDR": "10.0.0.1"}
        ).status_code
        == 200
    )


def test_global_allowlist_is_checked_before_credentials(client, app):
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", None, "", utc_now())
    outside = {"REMOTE_ADDR": "192.0.2.1"}
    for headers in ({}, basic("alice"), basic("alice", "wrong-password")):
        response = client.get("/simple/", headers=headers, environ_base=outside)
        assert response.status_code == 403  # same answer whatever the credentials
        assert "WWW-Authenticate" not in response.headers
    audit = db.query_audit(since="2000", action="auth_failed")
    assert audit == []  # the password was never looked at


def test_throttle_answers_429_and_lifts(app, settings, tmp_path):
    throttled = create_app(
        replace(
            settings,
            data_dir=tmp_path / "t",
            database_url=another_database(settings),
            throttle_ip_failures=3,
            throttle_seconds=1,
        )
    )
    db = throttled.extensions["teamindex"].db
    db.add_user(
        "alice",
        app.extensions["teamindex"].db.get_user("alice").password_hash,
        is_admin=False,
        now=utc_now(),
    )
    client = throttled.test_client()
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    for _ in range(3):
        response = client.get("/simple/", headers=basic("alice", "guess"), environ_base=attacker)
        assert response.status_code == 401
    response = client.get("/simple/", headers=basic("alice"), environ_base=attacker)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) == 1
    # a colleague on another address with the right password is not affected
    colleague = {"REMOTE_ADDR": "198.51.100.8"}
    assert client.get("/simple/", headers=basic("alice"), environ_base=colleague).status_code == 200
    # no credentials at all (pip's first try) is not a failure and not throttled
    assert client.get("/simple/", environ_base=colleague).status_code == 401
    import time

    time.sleep(1.1)
    assert client.get("/simple/", headers=basic("alice"), environ_base=attacker).status_code == 200
    actions = [event.action for event in db.query_audit(since="2000")]
    assert actions.count("auth_failed") == 3
    assert "throttled" in actions


def test_expired_and_revoked_tokens_get_their_reason_and_are_logged(client, app):
    """Issue 10: the holder of a revoked or expired secret learns why (it is not a guess:
    only the holder has it), the audit names the token, and the throttle does not count it."""
    db = app.extensions["teamindex"].db
    expires = utc_stamp(datetime.now(timezone.utc) - timedelta(seconds=1))
    expired_id, expired = add_token(app, "alice", expires=expires)
    revoked_id, revoked = add_token(app, "alice")
    db.revoke_token(revoked_id, utc_now())
    for secret, state in ((expired, "expired"), (revoked, "revoked")):
        for user in ("__token__", "alice"):
            response = client.get("/simple/", headers=basic(user, secret))
            assert response.status == f"401 Invalid credentials: token {state}."
            assert response.text == f"Invalid credentials: token {state}.\n"
            assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    events = db.query_audit(since="2000", action="auth_failed")
    assert [(e.user, e.token_id, e.outcome, e.detail) for e in events] == [
        ("alice", expired_id, "denied", "token expired"),
        ("alice", expired_id, "denied", "token expired"),
        ("alice", revoked_id, "denied", "token revoked"),
        ("alice", revoked_id, "denied", "token revoked"),
    ]
    assert db.throttle_entries(now=0, window=0) == []  # nothing counted


def test_token_use_is_recorded(client, app):
    token_id, secret = add_token(app, "alice")
    client.get(
        "/simple/", headers=basic("__token__", secret), environ_base={"REMOTE_ADDR": "10.2.3.4"}
    )
    token = app.extensions["teamindex"].db.get_token(token_id)
    assert token.last_ip == "10.2.3.4" and token.last_used is not None


def test_secrets_never_reach_audit_or_logs(client, app, tmp_path, caplog):
    _id, secret = add_token(app, "alice")
    wheel = make_wheel(tmp_path, "leak-check", "1.0")
    upload(client, wheel, None, headers=basic("__token__", secret))
    client.get("/simple/", headers=basic("alice", "a-wrong-password"))
    client.get("/simple/", headers=basic("__token__", secret[:-2] + "xx"))
    db = app.extensions["teamindex"].db
    dump = json.dumps([event.__dict__ for event in db.query_audit(since="2000")])
    assert "upload" in dump and "auth_failed" in dump
    for secret_text in (secret, "a-wrong-password", PASSWORD, secret[:-2] + "xx"):
        assert secret_text not in dump
        assert secret_text not in caplog.text
    if not app.extensions["teamindex"].settings.database_url:  # the SQLite file's bytes
        raw = (app.extensions["teamindex"].settings.db_path).read_bytes()
        assert secret.encode() not in raw and PASSWORD.encode() not in raw


def test_restricted_project_root_listing_is_per_viewer(client, app, tmp_path):
    wheel = make_wheel(tmp_path, "hidden-thing", "1.0")
    assert upload(client, wheel).status_code == 200
    app.extensions["teamindex"].db.set_visibility("hidden-thing", "restricted")
    assert b"hidden-thing" in client.get("/simple/", headers=basic("alice")).data
    assert b"hidden-thing" not in client.get("/simple/", headers=basic("bob")).data
    assert b"hidden-thing" in client.get("/simple/", headers=basic("root")).data
    assert client.get("/simple/hidden-thing/", headers=basic("bob")).status_code == 404


# -- the real server: proxies ---------------------------------------------------------------------


def _get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(("trusted_proxy", "status"), [("", 403), ("127.0.0.1", 200)])
def test_forwarded_for_is_believed_only_from_the_named_proxy(app, settings, trusted_proxy, status):
    """The global list admits 10.0.0.0/8 only; the request really comes from 127.0.0.1 and
    claims (X-Forwarded-For) to come from 10.1.1.1."""
    app.extensions["teamindex"].db.add_allow("10.0.0.0/8", None, "", utc_now())
    live, server = start_server(app, replace(settings, trusted_proxy=trusted_proxy))
    try:
        headers = basic("alice") | {"X-Forwarded-For": "10.1.1.1"}
        assert _get(f"{live.url}/simple/", headers) == status
        # without the header the loopback peer itself is outside the list
        assert _get(f"{live.url}/simple/", basic("alice")) == 403
    finally:
        server.stop()


# -- CLI -----------------------------------------------------------------------------------


def test_token_commands_round_trip(app, settings, capsys):
    data = str(settings.data_dir)
    assert (
        main(
            [
                "token",
                "create",
                "alice",
                "--scope",
                "upload",
                "--project",
                "team-*",
                "--expires",
                "30d",
                "--note",
                "ci",
                "--data-dir",
                data,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    secret = out.splitlines()[1]
    assert looks_like_token(secret)
    client = app.test_client()
    assert client.get("/simple/", headers=basic("__token__", secret)).status_code == 200

    assert main(["token", "list", "alice", "--json", "--data-dir", data]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["scope"], t["projects"], t["note"]) for t in listed] == [
        ("upload", ["team-*"], "ci")
    ]
    assert secret not in json.dumps(listed)

    assert main(["token", "rotate", str(listed[0]["id"]), "--data-dir", data]) == 0
    new_secret = capsys.readouterr().out.splitlines()[1]
    assert client.get("/simple/", headers=basic("__token__", secret)).status_code == 401
    assert client.get("/simple/", headers=basic("__token__", new_secret)).status_code == 200

    assert main(["token", "revoke", str(listed[0]["id"]), "--data-dir", data]) == 0
    assert client.get("/simple/", headers=basic("__token__", new_secret)).status_code == 401
    assert main(["token", "revoke", str(listed[0]["id"]), "--data-dir", data]) == 1
    assert "no active token" in capsys.readouterr().err

    assert main(["audit", "--json", "--action", "token_rotate", "--data-dir", data]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["action"] for e in events] == ["token_rotate"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "create", "nobody"], "no user 'nobody'"),
        (["token", "create", "alice", "--expires", "soon"], "expiry must be like"),
        (["token", "create", "alice", "--allow-ip", "10.0.0.0/99"], "not an IP address"),
        (["grant", "alice", "missing", "reader"], "no project 'missing'"),
        (["allow", "add", "banana"], "not an IP address or CIDR"),
        (["project", "create", "bad_"], "invalid value for Name"),
    ],
)
def test_access_commands_fail_with_one_line(app, settings, capsys, args, message):
    assert main([*args, "--data-dir", str(settings.data_dir)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_project_reservation_visibility_and_grants(app, settings, capsys, tmp_path):
    data = str(settings.data_dir)
    assert (
        main(
            [
                "project",
                "create",
                "Reserved.Name",
                "--visibility",
                "restricted",
                "--owner",
                "alice",
                "--data-dir",
                data,
            ]
        )
        == 0
    )
    client = app.test_client()
    wheel = make_wheel(tmp_path, "reserved-name", "1.0")

    def upload_as(user: str) -> int:
        return upload(client, wheel, user).status_code

    assert upload_as("bob") == 404  # reserved and restricted: bob cannot even see it
    assert main(["grant", "bob", "reserved-name", "reader", "--data-dir", data]) == 0
    assert upload_as("bob") == 403  # now visible, but readers do not upload
    assert main(["grant", "bob", "reserved-name", "maintainer", "--data-dir", data]) == 0
    assert upload_as("bob") == 200
    assert main(["project", "show", "reserved-name", "--data-dir", data]) == 0
    shown = capsys.readouterr().out
    assert "visibility  restricted" in shown and "bob: maintainer" in shown
    assert "alice: owner" in shown and "files       1" in shown
    assert main(["revoke", "bob", "reserved-name", "--data-dir", data]) == 0
    assert client.get("/simple/reserved-name/", headers=basic("bob")).status_code == 404
    assert (
        main(["project", "set", "reserved-name", "--visibility", "team", "--data-dir", data]) == 0
    )
    assert client.get("/simple/reserved-name/", headers=basic("bob")).status_code == 200


def test_allow_commands(app, settings, capsys):
    data = str(settings.data_dir)
    assert main(["allow", "list", "--data-dir", data]) == 0
    assert "every address may connect" in capsys.readouterr().out
    assert main(["allow", "add", "10.0.0.0/8", "--note", "office", "--data-dir", data]) == 0
    assert main(["allow", "add", "2001:db8::/32", "--user", "alice", "--data-dir", data]) == 0
    assert main(["allow", "add", "10.0.0.0/8", "--data-dir", data]) == 1
    capsys.readouterr()
    assert main(["allow", "list", "--data-dir", data]) == 0
    listing = capsys.readouterr().out
    assert "(global)" in listing and "10.0.0.0/8" in listing and "office" in listing
    assert "alice" in listing and "2001:db8::/32" in listing
    client = app.test_client()
    assert (
        client.get(
            "/simple/", headers=basic("bob"), environ_base={"REMOTE_ADDR": "192.0.2.1"}
        ).status_code
        == 403
    )
    assert main(["allow", "remove", "10.0.0.0/8", "--data-dir", data]) == 0
    assert (
        client.get(
            "/simple/", headers=basic("bob"), environ_base={"REMOTE_ADDR": "192.0.2.1"}
        ).status_code
        == 200
    )


# -- /api/ yank -------------------------------------------------------------------------------


def test_maintainer_yanks_and_unyanks_over_http(client, app, tmp_path):
    wheel = make_wheel(tmp_path, "yank-me", "1.0")
    assert upload(client, wheel).status_code == 200
    json_page = {"Accept": "application/vnd.pypi.simple.v1+json"}

    def yanked() -> object:
        page = client.get("/simple/yank-me/", headers=basic("bob") | json_page).get_json(force=True)
        return page["files"][0]["yanked"]

    assert client.post("/api/yank-me/1.0/yank", headers=basic("bob")).status_code == 403
    response = client.post(
        "/api/Yank.Me/1.0.0/yank", headers=basic("alice"), data={"reason": "broken\nbuild"}
    )
    assert response.status_code == 200
    assert yanked() == "broken build"
    assert client.post("/api/yank-me/1.0/unyank", headers=basic("alice")).status_code == 200
    assert yanked() is False
    missing = client.post("/api/yank-me/2.0/yank", headers=basic("alice"))
    assert missing.status == "404 Project 'yank-me' has no release '2.0'."
    assert client.post("/api/yank-me/not!a!version/yank", headers=basic("alice")).status_code == 400
    assert client.post("/api/nope/1.0/yank", headers=basic("alice")).status_code == 404
    _id, secret = add_token(app, "alice")
    assert (
        client.post("/api/yank-me/1.0/yank", headers=basic("__token__", secret)).status_code == 403
    )
    events = app.extensions["teamindex"].db.query_audit(since="2000", project="yank-me")
    assert [(e.action, e.user, e.detail) for e in events if e.action != "upload"] == [
        ("yank", "bob", "not allowed"),  # the refusals are audited too (issue 10, low 10)
        ("yank", "alice", "1.0.0 broken build"),
        ("unyank", "alice", "1.0"),
        ("yank", "alice", f"not allowed for token {_id} (scope or project list)"),
    ]


# -- a deleted user's id, caches and sessions (issue 10, item 8) ---------------------------------


def test_a_new_hire_never_sees_what_a_deleted_user_could(app, client, tmp_path):
    """The leaver reads a restricted project (pages cached for their id); they are deleted
    and a new user is made: the new user must not inherit the id, the cached /simple/ and
    web listings, or anything else."""
    db = app.extensions["teamindex"].db
    dists = tmp_path / "dists"
    dists.mkdir()
    assert upload(client, make_wheel(dists, "secret-proj", "1.0"), "bob").status_code == 200
    db.set_visibility("secret-proj", "restricted")
    add_user(app, "leaver")
    leaver = db.get_user("leaver")
    db.set_role(leaver.id, db.get_project("secret-proj").id, "reader")
    leaver_web = app.test_client()
    login(leaver_web, "leaver")
    for http, path in ((client, "/simple/"), (leaver_web, "/")):
        headers = basic("leaver") if http is client else {}
        assert "secret-proj" in http.get(path, headers=headers).get_data(as_text=True)
    assert db.delete_user("leaver")
    add_user(app, "new-hire")
    hire = db.get_user("new-hire")
    assert hire.id != leaver.id, "user ids must never be reused"
    simple = client.get("/simple/", headers=basic("new-hire"))
    assert simple.status_code == 200 and "secret-proj" not in simple.get_data(as_text=True)
    hire_web = app.test_client()
    login(hire_web, "new-hire")
    home = hire_web.get("/")
    assert home.status_code == 200 and "secret-proj" not in home.get_data(as_text=True)
    # The leaver's browser session died with them.
    assert leaver_web.get("/").status_code == 302


def test_deleting_a_user_moves_both_serials(app):
    db = app.extensions["teamindex"].db
    before = db.serials()
    assert db.delete_user("bob")
    after = db.serials()
    assert after[0] > before[0] and after[1] > before[1]


# -- cross-site requests to endpoints that take Basic auth (issue 10, item 17) -------------------

# Header shapes as browsers send them: a form post or fetch() from another site, a sibling
# host, another port or scheme of this host, and a sandboxed page (opaque origin).
CROSS_SITE = [
    {
        "Origin": "https://evil.example",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
    },
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
    {"Origin": "http://wiki.localhost", "Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},  # no Origin (some GET-turned-POST redirects)
    {"Origin": "https://evil.example"},  # an older browser without fetch metadata
    {"Origin": "null"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # from hosted docs (sandboxed)
    {"Origin": "http://localhost:8080"},
    {"Origin": "https://localhost"},
]
SAME_ORIGIN = [
    {},  # twine, uv, poetry, curl
    {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
    {"Sec-Fetch-Site": "none"},
]


def _basic_auth_posts(client, tmp_path, headers: dict[str, str]) -> dict[str, int]:
    """Every state-changing endpoint that takes Basic auth, as alice (the owner), with
    `headers` added: the status of each."""
    version = "1.0"
    wheel = make_wheel(tmp_path, "cross-proj", version)
    statuses = {"upload": upload(client, wheel, headers=headers).status_code}
    if statuses["upload"] != 200:  # the release the others act on
        assert upload(client, wheel).status_code == 200
    auth = basic("alice") | headers
    for action in ("yank", "unyank"):
        response = client.post(f"/api/cross-proj/{version}/{action}", headers=auth)
        statuses[action] = response.status_code
    response = client.post(
        f"/docs/cross-proj/{version}/",
        data=docs_zip(),
        headers=auth,
        content_type="application/zip",
    )
    statuses["docs"] = response.status_code
    if response.status_code == 403:
        assert (
            response.status
            == "403 Cross-site requests may not change the index; send it from a tool."
        )
    return statuses


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_posts_with_basic_auth_are_refused(client, app, tmp_path, headers):
    statuses = _basic_auth_posts(client, tmp_path, headers)
    assert statuses == {"upload": 403, "yank": 403, "unyank": 403, "docs": 403}
    db = app.extensions["teamindex"].db
    assert db.docs_builds(db.get_project("cross-proj").id) == []


@pytest.mark.parametrize("headers", SAME_ORIGIN)
def test_tools_and_same_origin_posts_go_through(client, tmp_path, headers):
    statuses = _basic_auth_posts(client, tmp_path, headers)
    assert statuses == {"upload": 200, "yank": 200, "unyank": 200, "docs": 200}


def test_own_origin_is_judged_by_the_host_the_browser_used(live_server, client, tmp_path):
    """Through waitress, the request's own origin is http://127.0.0.1:<port>."""
    assert upload(client, make_wheel(tmp_path, "cross-proj", "1.0")).status_code == 200

    def yank(origin: str) -> int:
        request = urllib.request.Request(
            f"{live_server.url}/api/cross-proj/1.0/yank",
            data=b"reason=x",
            headers=basic("alice") | {"Origin": origin},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    assert yank("http://localhost:" + live_server.url.rsplit(":", 1)[1]) == 403  # other host
    assert yank(live_server.url) == 200
