"""The failed-login throttle as an attacker meets it (issue 10, High 2 and Medium 6).

Every route test uses the default limits (20 failures per address, 50 per user name, 5
minutes) unless it says otherwise, and sends what an attacker or a broken CI job sends.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time

import pytest
from builders import make_wheel
from conftest import add_token, add_user, basic
from flask import Flask
from flask.testing import FlaskClient
from uploading import upload
from web_support import CSRF_RE, csrf_of, login, post_form
from werkzeug.test import TestResponse

from teamindex.access.netrules import (
    Throttle,
    ThrottlePolicy,
    address_key,
    normalize_address,
    user_key,
)
from teamindex.app import create_app
from teamindex.cli import main
from teamindex.clock import utc_now
from teamindex.db import Database
from teamindex.db.core import REQUEST_BUSY_TIMEOUT_MS

ROOT = "/simple/"


def get(client: FlaskClient, headers: dict[str, str], ip: str, path: str = ROOT) -> TestResponse:
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": ip})


def fail_logins(client: FlaskClient, user: str, ips: list[str], count: int) -> None:
    """`count` wrong passwords for `user`, round robin over `ips`; each must be a 401."""
    for n in range(count):
        response = get(client, basic(user, f"guess-{n}"), ips[n % len(ips)])
        assert response.status_code == 401, (n, response.status)


def throttled(app: Flask) -> list[tuple[str, str, int, bool]]:
    db = app.extensions["teamindex"].db
    now = time.time()
    return [
        (e.kind, e.subject, e.failures, e.blocked_until > now)
        for e in db.throttle_entries(now=now, window=300)
    ]


# -- the keys: pure helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped IPv6 is the IPv4 address
        ("::ffff:c633:6407", "198.51.100.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:9", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("", ""),  # no peer address (a unix socket): one key of its own
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_address_key(ip, key):
    assert address_key(ip) == key


@pytest.mark.parametrize(
    ("sent", "stored", "key"),
    [
        ("dave", "dave", "dave"),
        ("Dave", "dave", "dave"),  # NOCASE found the stored name: that is the key
        ("DAVE", "Dave", "Dave"),
        ("dAvE", None, "dave"),  # unknown names are casefolded
        ("NOBODY", None, "nobody"),
        ("ZOË", None, "zoë"),
        ("Straße", None, "strasse"),
    ],
)
def test_user_key(sent, stored, key):
    assert user_key(sent, stored) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7 ", "198.51.100.7"),
        ("198.51.100.7/32", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2::77", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::5/64", "2001:db8:1:2::/64"),
    ],
)
def test_normalize_address(text, key):
    assert normalize_address(text) == key


@pytest.mark.parametrize("text", ["", "dave", "198.51.100.0/24", "2001:db8::/48", "1.2.3.4.5"])
def test_normalize_address_refuses(text):
    with pytest.raises(ValueError, match="not an IP address"):
        normalize_address(text)


# -- High 2: nobody can lock the tokens out -------------------------------------------------


def test_fifty_token_guesses_over_three_addresses_lock_out_no_token(app, client):
    _id, secret = add_token(app, "alice", scope="read")
    attackers = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]  # 17, 17, 16: under 20 each
    for n in range(50):
        guess = f"tix_{n:043d}" if n % 2 else f"guess-{n}"  # token-shaped or not
        response = get(client, basic("__token__", guess), attackers[n % 3])
        assert response.status_code == 401, (n, response.status)
    for ip in [*attackers, "198.51.100.10", "10.0.0.5", "2001:db8::5"]:
        assert get(client, basic("__token__", secret), ip).status_code == 200, ip
        assert get(client, basic("alice", secret), ip).status_code == 200, ip
    assert all(kind == "address" for kind, *_rest in throttled(app))  # no name was counted


def test_token_guesses_still_block_their_address(app, client):
    _id, secret = add_token(app, "alice", scope="read")
    for n in range(20):
        assert get(client, basic("__token__", f"tix_{n:043d}"), "203.0.113.9").status_code == 401
    response = get(client, basic("__token__", secret), "203.0.113.9")
    assert response.status_code == 429
    assert get(client, basic("__token__", secret), "203.0.113.10").status_code == 200


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_a_ci_job_with_a_dead_token_does_not_block_the_office(app, client, state):
    db = app.extensions["teamindex"].db
    office = "192.0.2.50"
    fields = {"expires": "2020-01-01T00:00:00.000000Z"} if state == "expired" else {}
    dead_id, dead = add_token(app, "alice", **fields)
    if state == "revoked":
        db.revoke_token(dead_id, utc_now())
    _id, live = add_token(app, "bob", scope="read")
    for _run in range(3):  # three CI runs of ten requests each: 30 > 20
        for user in ("__token__",) * 9 + ("alice",):
            response = get(client, basic(user, dead), office)
            assert response.status == f"401 Invalid credentials: token {state}."
    # Colleagues at the office: new verifications, password and token alike.
    assert get(client, basic("bob"), office).status_code == 200
    assert get(client, basic("__token__", live), office).status_code == 200
    assert throttled(app) == []
    events = db.query_audit(since="2000", action="auth_failed")
    assert len(events) == 30
    assert {(e.user, e.token_id, e.detail, e.ip) for e in events} == {
        ("alice", dead_id, f"token {state}", office)
    }
    # Guesses from the office still count and block new logins.
    add_user(app, "mallory")  # a known name: cheap test hashing instead of the dummy scrypt
    fail_logins(client, "mallory", [office], 20)
    assert get(client, basic("root"), office).status_code == 429


# -- Medium 6: every spelling of a name, every address of a network ------------------------


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("dave", 50),  # a user, at the default limit
        ("nobody", 12),  # a name that is no user (each guess costs a real scrypt: fewer)
    ],
)
def test_every_spelling_of_a_name_counts_against_one_name(make_app, name, limit):
    app = make_app(throttle_user_failures=limit)
    add_user(app, "dave")
    client = app.test_client()
    assert get(client, basic("dave"), "10.0.0.7").status_code == 200  # dave's own machine
    spellings = [name, name.capitalize(), name.upper(), name[0] + name[1:].upper()]
    for n in range(limit):  # at most ten per address: no address reaches 20
        response = get(client, basic(spellings[n % 4], f"guess-{n}"), f"203.0.113.{n // 10}")
        assert response.status_code == 401, (n, response.status)
    for spelling in spellings:
        response = get(client, basic(spelling, "guess-x"), "198.51.100.1")
        assert response.status_code == 429, spelling
        assert response.headers["Retry-After"] == "300"
    if name == "dave":
        # Blocked as dave, not let in as Dave; dave's own machine is exempt.
        assert get(client, basic("Dave"), "198.51.100.2").status_code == 429
        assert get(client, basic("DAVE"), "10.0.0.7").status_code == 200
        assert get(client, basic("dave"), "10.0.0.7").status_code == 200
    assert get(client, basic("alice"), "198.51.100.1").status_code == 200  # others are not


def test_addresses_of_one_ipv6_network_count_as_one(app, client):
    for n in range(20):  # a new address of the same /64 for every guess
        response = get(client, basic("alice", "guess"), f"2001:db8:1:2::{n + 1:x}")
        assert response.status_code == 401
    assert get(client, basic("bob"), "2001:db8:1:2:ffff::9").status_code == 429
    assert get(client, basic("bob"), "2001:db8:1:3::1").status_code == 200  # the next /64


def test_ipv4_mapped_addresses_count_with_their_ipv4_address(app, client):
    fail_logins(client, "alice", ["198.51.100.7", "::ffff:198.51.100.7"], 20)
    assert get(client, basic("bob"), "198.51.100.7").status_code == 429
    assert get(client, basic("bob"), "::ffff:198.51.100.7").status_code == 429


# -- blocks and logins verified before them ---------------------------------------------------


def test_a_blocked_address_keeps_logins_it_verified_before(app, client, tmp_path):
    office = "192.0.2.60"
    wheel = make_wheel(tmp_path, "office-lib", "1.0")
    assert upload(client, wheel, "alice").status_code == 200
    file_path = f"/files/office-lib/{wheel.name}"
    assert get(client, basic("alice"), office).status_code == 200
    assert download(client, office, file_path) == 200
    add_user(app, "mallory")
    fail_logins(client, "mallory", [office], 20)
    # alice's installs go on: the index page (hot path) and the download (Flask).
    assert get(client, basic("alice"), office).status_code == 200
    assert download(client, office, file_path) == 200
    # New verifications wait: bob's first login, alice's password typed wrongly or anew.
    assert get(client, basic("bob"), office).status_code == 429
    assert get(client, basic("alice", "typo"), office).status_code == 429
    assert main(["throttle", "clear", office, "--data-dir", str(app_dir(app))]) == 0
    assert get(client, basic("bob"), office).status_code == 200


def download(client: FlaskClient, ip: str, path: str) -> int:
    with get(client, basic("alice"), ip, path) as response:  # closes the file it streams
        return response.status_code


def app_dir(app: Flask) -> str:
    return str(app.extensions["teamindex"].settings.data_dir)


# -- in the database: restarts and several workers -----------------------------------------


def test_the_throttle_survives_a_restart(app, client, settings):
    fail_logins(client, "alice", ["203.0.113.5"], 20)
    fail_logins(client, "ALICE", [f"203.0.113.{n}" for n in range(10, 20)], 30)
    restarted = create_app(settings)
    try:
        again = restarted.test_client()
        assert get(again, basic("bob"), "203.0.113.5").status_code == 429  # the address
        assert get(again, basic("alice"), "198.51.100.3").status_code == 429  # the name
        assert get(again, basic("bob"), "198.51.100.3").status_code == 200
    finally:
        restarted.extensions["teamindex"].db.close()


def test_known_addresses_survive_a_restart(app, client, settings):
    assert get(client, basic("alice"), "10.0.0.7").status_code == 200
    fail_logins(client, "alice", [f"203.0.113.{n}" for n in range(10)], 50)
    restarted = create_app(settings)
    try:
        again = restarted.test_client()
        assert get(again, basic("alice"), "10.0.0.7").status_code == 200
        assert get(again, basic("alice"), "10.0.0.8").status_code == 429
    finally:
        restarted.extensions["teamindex"].db.close()


def test_two_workers_on_one_data_dir_share_the_counts(app, client, settings):
    second = create_app(settings)  # a second worker process: its own connections and caches
    try:
        other = second.test_client()
        fail_logins(client, "alice", ["203.0.113.6"], 10)
        fail_logins(other, "alice", ["203.0.113.6"], 10)
        assert get(client, basic("bob"), "203.0.113.6").status_code == 429
        assert get(other, basic("bob"), "203.0.113.6").status_code == 429
    finally:
        second.extensions["teamindex"].db.close()


# -- the store: pruning, best effort ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path) -> Database:
    db = Database(tmp_path / "throttle.sqlite3")
    db.migrate()
    return db


def test_old_rows_are_pruned(store):
    clock = FakeClock()
    throttle = Throttle(ThrottlePolicy(ip_failures=2, window=10, cooldown=10), store, clock)
    for n in range(100):
        throttle.failure(f"203.0.113.{n}", f"user{n}")
    throttle.success("10.0.0.7", "alice")
    assert len(store.throttle_entries(now=0, window=0)) == 200
    clock.now += 10 * 12 + 1  # past the window, the blocks and the known-address time
    throttle.failure("203.0.113.250", None)
    assert [e.subject for e in store.throttle_entries(now=0, window=0)] == ["203.0.113.250"]
    assert store.throttle_state("10.0.0.7", "alice").user_seen_here is None


def test_successes_are_written_at_most_once_a_minute(store):
    clock = FakeClock()
    throttle = Throttle(ThrottlePolicy(), store, clock)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    throttle.success("10.0.0.7", "alice")
    writes = len(statements)
    for _ in range(100):
        throttle.success("10.0.0.7", "alice")
    assert len(statements) == writes  # nothing more
    clock.now += 61
    throttle.success("10.0.0.7", "alice")
    assert len(statements) > writes
    store.conn.set_trace_callback(None)
    assert store.throttle_state("10.0.0.7", "alice").user_seen_here == clock.now


def test_a_failure_is_one_statement(store):
    throttle = Throttle(ThrottlePolicy(), store, FakeClock())
    throttle.failure("203.0.113.1", "alice")  # the first one also prunes
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    assert throttle.failure("203.0.113.1", "alice") == []
    store.conn.set_trace_callback(None)
    writes = [s for s in statements if not s.startswith("PRAGMA busy_timeout")]
    assert len(writes) == 1 and writes[0].lstrip().startswith("INSERT INTO throttle")
    assert sorted((e.kind, e.failures) for e in store.throttle_entries(now=0, window=0)) == [
        ("address", 2),
        ("user", 2),
    ]


def test_a_locked_database_loses_the_count_not_the_request(store, tmp_path, caplog):
    throttle = Throttle(ThrottlePolicy(ip_failures=1), store, FakeClock())
    holder = sqlite3.connect(tmp_path / "throttle.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="teamindex"):
            assert throttle.failure("203.0.113.1", "alice") == []
            throttle.success("10.0.0.7", "alice")
        assert time.monotonic() - started < 5  # not the 30 s busy timeout
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "was not counted" in caplog.text and "was not recorded" in caplog.text
    assert throttle.retry_after("203.0.113.1", "alice") == 0
    assert throttle.failure("203.0.113.1", "alice") == [("address", "203.0.113.1")]


def test_throttle_writes_leave_the_connections_own_wait(tmp_path):
    """A throttle write waits briefly, then puts back the connection's own busy timeout (a
    request's 3 s), not the CLI's 30 s: the next write of that request must not wait 30 s."""
    db = Database(tmp_path / "busy.sqlite3", busy_timeout_ms=REQUEST_BUSY_TIMEOUT_MS)
    db.migrate()
    throttle = Throttle(ThrottlePolicy(), db, FakeClock())
    throttle.failure("203.0.113.1", "alice")
    throttle.success("10.0.0.7", "alice")
    assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] == REQUEST_BUSY_TIMEOUT_MS


# -- a password from outside the user's own list ------------------------------------------


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_a_user_off_their_list_does_not_lock_out_the_office(app, client, password):
    """alice's list is the VPN; she runs pip from the office (each install is several
    requests). Her attempts from there never succeed, right password or wrong, so they
    count against her name only: the office address is never blocked for anyone."""
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", db.get_user("alice").id, "vpn", utc_now())
    office = "192.0.2.77"
    sent = basic("alice") if password == "right" else basic("alice", "not-her-password")
    for n in range(25):
        assert get(client, sent, office).status_code == 401, n
    assert get(client, basic("bob"), office).status_code == 200
    assert get(client, basic("__token__", add_token(app, "bob")[1]), office).status_code == 200
    assert [(k, s) for k, s, _n, _b in throttled(app)] == [("user", "alice")]


def test_off_list_attempts_block_the_name_and_answer_alike(app, client):
    """Fifty attempts from off her list block the name alice (she is not on her usual
    machines then), and the right password keeps getting the wrong one's answer."""
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", db.get_user("alice").id, "vpn", utc_now())
    ips = ["192.0.2.77", "198.51.100.1"]
    answers = set()
    for n in range(50):
        sent = basic("alice") if n % 2 else basic("alice", f"guess-{n}")
        response = get(client, sent, ips[n % 2])
        answers.add((response.status, response.get_data(as_text=True)))
    assert len(answers) == 1 and next(iter(answers))[0].startswith("401 ")
    assert ("user", "alice", 0, True) in throttled(app)
    for sent in (basic("alice"), basic("alice", "guess")):
        assert get(client, sent, "192.0.2.78").status_code == 429
    assert get(client, basic("bob"), ips[0]).status_code == 200


# -- teamindex throttle list / clear ---------------------------------------------------------


def run(app: Flask, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data-dir", app_dir(app)])
    out, err = capsys.readouterr()
    return code, out, err


def test_throttle_list_and_clear_from_the_cli(app, client, capsys):
    assert run(app, capsys, "throttle", "list") == (
        0,
        "no failed logins counted, nothing blocked\n",
        "",
    )
    fail_logins(client, "alice", ["203.0.113.7"], 20)
    fail_logins(client, "bob", ["2001:db8:1:2::1", "2001:db8:1:2::2"], 20)
    code, out, _err = run(app, capsys, "throttle", "list")
    assert code == 0
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert lines["203.0.113.7"].startswith("address  203.0.113.7 ")
    assert "blocked until" in lines["203.0.113.7"]
    assert "(retry in 300 s)" in lines["2001:db8:1:2::/64"]
    assert lines["alice"].startswith("user     alice ") and " 20/50 " in lines["alice"]
    assert "counting since" in lines["alice"]
    code, out, _err = run(app, capsys, "throttle", "list", "--json")
    listed = {(v["kind"], v["subject"]): v for v in json.loads(out)}
    assert listed[("address", "203.0.113.7")]["retry_after"] == 300
    assert listed[("user", "bob")] | {"window_start": ""} == {
        "kind": "user",
        "subject": "bob",
        "failures": 20,
        "max_failures": 50,
        "window_start": "",
        "blocked_until": None,
        "retry_after": 0,
    }

    assert get(client, basic("root"), "203.0.113.7").status_code == 429
    assert run(app, capsys, "throttle", "clear", "203.0.113.7")[0] == 0
    assert get(client, basic("root"), "203.0.113.7").status_code == 200
    # Any address of the /64 names it.
    assert get(client, basic("root"), "2001:db8:1:2::99").status_code == 429
    assert run(app, capsys, "throttle", "clear", "2001:db8:1:2::77")[1] == (
        "cleared the throttle for address 2001:db8:1:2::/64\n"
    )
    assert get(client, basic("root"), "2001:db8:1:2::99").status_code == 200
    assert run(app, capsys, "throttle", "clear", "--user", "BOB")[1] == (
        "cleared the throttle for user bob\n"
    )
    assert run(app, capsys, "throttle", "clear", "--all")[0] == 0
    assert throttled(app) == []
    db = app.extensions["teamindex"].db
    details = [e.detail for e in db.query_audit(since="2000", action="throttle_clear")]
    assert details == ["address 203.0.113.7", "address 2001:db8:1:2::/64", "user bob", "all"]
    assert all(
        e.user.startswith("cli") for e in db.query_audit(since="2000", action="throttle_clear")
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("throttle", "clear", "10.0.0.0/8"), "not an IP address or IPv6 /64: '10.0.0.0/8'"),
        (("throttle", "clear", "dave"), "not an IP address: 'dave'"),
        (("throttle", "clear", "10.1.2.3"), "nothing counted or blocked for address 10.1.2.3"),
        (("throttle", "clear", "--user", "nobody"), "nothing counted or blocked for user nobody"),
    ],
)
def test_throttle_clear_refusals(app, capsys, args, message):
    assert run(app, capsys, *args) == (1, "", f"teamindex: error: {message}\n")


def test_throttle_clear_needs_a_target(app, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["throttle", "clear", "--data-dir", app_dir(app)])
    assert exited.value.code == 2
    assert "one of the arguments address --user --all is required" in capsys.readouterr().err


# -- /admin/throttle ---------------------------------------------------------------------------


def test_admin_page_lists_blocks_and_clears_them(app, client):
    fail_logins(client, "alice", ["203.0.113.8"], 20)
    login(client, "root")
    page = client.get("/admin/throttle")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<code>203.0.113.8</code>" in text and "blocked" in text
    assert "<code>alice</code>" in text and "20 / 50" in text
    assert 'href="/admin/throttle"' in client.get("/admin/").get_data(as_text=True)  # nav

    response = post_form(
        client,
        "/admin/throttle/clear",
        {"kind": "address", "subject": "203.0.113.8"},
        page="/admin/throttle",
    )
    assert response.status_code == 303 and response.headers["Location"] == "/admin/throttle"
    assert get(client, basic("bob"), "203.0.113.8").status_code == 200
    assert "Cleared the throttle for address 203.0.113.8." in client.get(
        "/admin/throttle"
    ).get_data(as_text=True)
    response = post_form(client, "/admin/throttle/clear", {"all": "yes"}, page="/admin/throttle")
    assert response.status_code == 303
    assert throttled(app) == []
    events = app.extensions["teamindex"].db.query_audit(since="2000", action="throttle_clear")
    assert [(e.user, e.ip, e.detail) for e in events] == [
        ("root", "127.0.0.1", "address 203.0.113.8"),
        ("root", "127.0.0.1", "all"),
    ]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        ({"kind": "address", "subject": "10.9.9.9"}, 404),
        ({"kind": "nonsense", "subject": "x"}, 400),
        ({"kind": "user"}, 400),
        ({}, 400),
    ],
)
def test_admin_clear_refusals(app, client, data, status):
    login(client, "root")
    response = post_form(client, "/admin/throttle/clear", data, page="/admin/throttle")
    assert response.status_code == status, response.status


@pytest.mark.parametrize(
    ("failures", "data", "cleared"),
    [
        (("dave", ["203.0.113.9"]), {"kind": "user", "subject": "Dave"}, "user dave"),
        (("dave", ["203.0.113.9"]), {"kind": "user", "subject": "DAVE "}, "user dave"),
        (("nobody", ["203.0.113.9"]), {"kind": "user", "subject": "NoBody"}, "user nobody"),
        (
            ("alice", ["2001:db8:5:6::1"]),
            {"kind": "address", "subject": "2001:db8:5:6::99"},
            "address 2001:db8:5:6::/64",
        ),
        (
            ("alice", ["203.0.113.9"]),
            {"kind": "address", "subject": "::ffff:203.0.113.9"},
            "address 203.0.113.9",
        ),
    ],
)
def test_admin_clear_finds_the_key_as_the_cli_does(app, client, failures, data, cleared):
    """The admin types the name or address as they know it; the throttle's key is the
    stored name and the /64 (like `teamindex throttle clear`)."""
    add_user(app, "dave")
    user, ips = failures
    fail_logins(client, user, ips, 3)
    login(client, "root")
    response = post_form(client, "/admin/throttle/clear", data, page="/admin/throttle")
    assert response.status_code == 303, response.status
    kind, subject = cleared.split(" ", 1)
    assert all((k, s) != (kind, subject) for k, s, _n, _b in throttled(app))
    events = app.extensions["teamindex"].db.query_audit(since="2000", action="throttle_clear")
    assert [e.detail for e in events] == [cleared]


def test_admin_clear_refuses_what_is_no_address(app, client):
    login(client, "root")
    data = {"kind": "address", "subject": "10.0.0.0/8"}
    response = post_form(client, "/admin/throttle/clear", data, page="/admin/throttle")
    assert response.status_code == 400
    assert "not an IP address or IPv6 /64" in response.get_data(as_text=True)


def test_only_administrators_with_their_password_manage_the_throttle(app, client):
    fail_logins(client, "alice", ["203.0.113.8"], 20)
    _id, admin_token = add_token(app, "root", scope="upload")
    for headers in (basic("alice"), basic("__token__", admin_token), basic("root", admin_token)):
        fresh = app.test_client()
        assert fresh.get("/admin/throttle", headers=headers).status_code == 403, headers
        # Whatever CSRF token such a login can get, the clear is refused.
        found = CSRF_RE.search(fresh.get("/", headers=headers).get_data(as_text=True))
        data = {"all": "yes", "csrf_token": found.group(1) if found else ""}
        response = fresh.post("/admin/throttle/clear", headers=headers, data=data)
        assert response.status_code == (403 if found else 400), (headers, response.status)
    anonymous = app.test_client().get("/admin/throttle")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    user = app.test_client()
    login(user, "alice")
    token = csrf_of(user.get("/"))
    response = user.post("/admin/throttle/clear", data={"all": "yes", "csrf_token": token})
    assert response.status_code == 403
    # Without the CSRF token even an administrator's form does nothing.
    admin = app.test_client()
    login(admin, "root")
    assert admin.post("/admin/throttle/clear", data={"all": "yes"}).status_code == 400
    assert ("address", "203.0.113.8", 0, True) in throttled(app)
