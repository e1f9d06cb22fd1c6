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
from conftest import PASSWORD, add_token, basic, start_server
from uploading import upload

from teamindex.app import create_app
from teamindex.auth import (
    AuthError,
    UsageRecorder,
    looks_like_token,
    new_token_secret,
    parse_expiry,
    token_digest,
    token_expired,
)
from teamindex.cli import main
from teamindex.clock import utc_now, utc_stamp
from teamindex.models import Token, User
from teamindex.netrules import Throttle, ThrottlePolicy, ip_allowed, parse_cidr
from teamindex.permissions import (
    Action,
    Decision,
    Principal,
    ProjectFacts,
    decide,
    token_covers,
)

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


def test_throttle_blocks_then_lifts():
    clock = FakeClock()
    throttle = Throttle(
        ThrottlePolicy(ip_failures=3, user_failures=5, window=60, cooldown=30), clock
    )
    assert throttle.retry_after("1.1.1.1", "eve") == 0
    assert not throttle.failure("1.1.1.1", "eve")
    assert not throttle.failure("1.1.1.1", "eve")
    assert throttle.failure("1.1.1.1", "eve")  # the third failure blocks
    assert throttle.retry_after("1.1.1.1", "eve") == 30
    assert throttle.retry_after("1.1.1.1", "alice") == 30  # the address is blocked
    assert throttle.retry_after("2.2.2.2", "alice") == 0  # other addresses are not
    clock.now += 31
    assert throttle.retry_after("1.1.1.1", "eve") == 0


def test_user_block_spares_known_good_addresses():
    clock = FakeClock()
    throttle = Throttle(
        ThrottlePolicy(ip_failures=100, user_failures=3, window=60, cooldown=30), clock
    )
    throttle.success("10.0.0.5", "alice")  # alice's own machine
    for attacker in ("6.6.6.1", "6.6.6.2", "6.6.6.3"):
        throttle.failure(attacker, "alice")
    assert throttle.retry_after("6.6.6.9", "alice") == 30
    assert throttle.retry_after("10.0.0.5", "alice") == 0


def test_failures_outside_the_window_do_not_count():
    clock = FakeClock()
    throttle = Throttle(ThrottlePolicy(ip_failures=2, window=10, cooldown=10), clock)
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
    response = client.get("/simple/", headers=basic("alice"), environ_base=outside)
    assert response.status == "403 Access from 192.0.2.9 is not allowed for this user."
    # other users are not affected by alice's list
    assert client.get("/simple/", headers=basic("bob"), environ_base=outside).status_code == 200


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
        replace(settings, data_dir=tmp_path / "t", throttle_ip_failures=3, throttle_seconds=1)
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


def test_expired_and_revoked_tokens_fail_like_wrong_passwords_and_are_logged(client, app):
    db = app.extensions["teamindex"].db
    expires = utc_stamp(datetime.now(timezone.utc) - timedelta(seconds=1))
    _id, expired = add_token(app, "alice", expires=expires)
    revoked_id, revoked = add_token(app, "alice")
    db.revoke_token(revoked_id, utc_now())
    for secret in (expired, revoked):
        response = client.get("/simple/", headers=basic("__token__", secret))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    events = db.query_audit(since="2000", action="auth_failed")
    assert [event.user for event in events] == ["__token__", "__token__"]


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
