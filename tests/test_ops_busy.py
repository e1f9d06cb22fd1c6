"""The database write-locked by someone else (a CLI command, a backup, a long transaction):
reads and logins go on with their bookkeeping skipped, and writes a request needs answer 503
with Retry-After within a few seconds. Before issue 10 (low 14) each of these held a worker
for SQLite's 30 s busy timeout and then answered 500.

The lock is real: a second sqlite3 connection holding BEGIN IMMEDIATE on the data dir's
database, as `sqlite3 teamindex.sqlite3` with an open transaction or another process would."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from builders import make_wheel
from conftest import PASSWORD, add_token, basic
from ops_support import get, post_upload
from uploading import stored_files, temp_files, upload
from web_support import csrf_of, docs_zip

from teamindex.access import audit as audit_module
from teamindex.config import Settings

# Generous: the point is "a few seconds, not SQLite's old 30 s" on a loaded test machine.
QUICKLY = 10.0
T = TypeVar("T")


@contextmanager
def write_locked(settings: Settings) -> Iterator[None]:
    """Hold the database's write lock from another connection for the duration."""
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def audit_actions(app) -> list[str]:
    db = app.extensions["teamindex"].db
    return [event.action for event in db.query_audit(since="")]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "busy-demo", "1.0")


def assert_retry_later(response) -> None:
    assert response.status_code == 503, response.status
    assert int(response.headers["Retry-After"]) > 0
    assert "busy" in response.status
    assert response.get_data(as_text=True).count("\n") == 1


# -- reads and logins: bookkeeping is skipped, the answer is the usual one ----------------------


def test_first_use_of_a_token_reads_while_locked(app, live_server):
    """Last-use is written on a token's first request; waitress, so the worker is real."""
    token_id, secret = add_token(app, "alice", scope="read")
    with write_locked(live_server.settings):
        (status, _body), elapsed = timed(
            lambda: get(live_server.url, "/simple/", "__token__", password=secret)
        )
        assert status == 200
        assert elapsed < QUICKLY
        # The hot path answers the next read; it records the use too, and must not wait.
        (status, _body), elapsed = timed(
            lambda: get(live_server.url, "/simple/", "__token__", password=secret)
        )
        assert (status, elapsed < QUICKLY) == (200, True)
    db = app.extensions["teamindex"].db
    assert db.get_token(token_id).last_used is None  # skipped, not queued behind the lock


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong-password"),
        ("nobody", "wrong-password"),
        ("ALICE", PASSWORD + "x"),
        ("__token__", "tix_" + "A" * 43),
        ("alice", "tix_" + "A" * 43),
    ],
    ids=["wrong-password", "unknown-user", "other-case", "unknown-token", "token-as-user"],
)
def test_failed_login_while_locked(app, client, settings, user, password):
    with write_locked(settings):
        response, elapsed = timed(lambda: client.get("/simple/", headers=basic(user, password)))
    assert response.status_code == 401
    assert elapsed < QUICKLY
    assert "auth_failed" not in audit_actions(app)  # skipped; the answer did not wait for it


def test_revoked_token_while_locked(app, client, settings):
    token_id, secret = add_token(app, "alice")
    app.extensions["teamindex"].db.revoke_token(token_id, "2020-01-01T00:00:00Z")
    with write_locked(settings):
        response, elapsed = timed(
            lambda: client.get("/simple/", headers=basic("__token__", secret))
        )
    assert (response.status_code, elapsed < QUICKLY) == (401, True)


def test_skipped_writes_are_logged_once_not_per_request(client, settings, caplog):
    with write_locked(settings):
        for _ in range(5):
            response = client.get("/simple/", headers=basic("alice", "wrong-password"))
            assert response.status_code == 401
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [
        "database busy (another writer holds the lock): skipped audit rows of refused requests"
    ]


def test_web_login_with_a_wrong_password_while_locked(client, settings):
    csrf = csrf_of(client.get("/login"))
    form = {"username": "alice", "password": "wrong-password", "csrf_token": csrf}
    with write_locked(settings):
        response, elapsed = timed(lambda: client.post("/login", data=form))
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert elapsed < QUICKLY


def test_download_counts_wait_for_the_lock_to_go(app, client, settings, wheel, monkeypatch):
    """A download whose turn it is to write the counters still succeeds; the counts stay in
    memory and are written by a later flush."""
    assert upload(client, wheel).status_code == 200
    url = f"/files/busy-demo/{wheel.name}"
    monkeypatch.setattr(audit_module, "FLUSH_SECONDS", 0.0)
    with write_locked(settings):
        response, elapsed = timed(lambda: client.get(url, headers=basic("alice")))
        assert (response.status_code, elapsed < QUICKLY) == (200, True)
        response.close()
    audit = app.extensions["teamindex"].audit
    audit.flush()
    counts = app.extensions["teamindex"].db.download_counts("")
    assert [(project, name, n) for _day, project, name, n in counts] == [
        ("busy-demo", wheel.name, 1)
    ]


# -- writes a request needs: 503 with Retry-After, nothing left behind --------------------------


@pytest.mark.parametrize("credential", ["password", "token"])
def test_upload_while_locked_answers_503_and_leaves_nothing(
    app, client, settings, wheel, credential
):
    if credential == "password":
        headers = basic("alice")
    else:
        headers = basic("__token__", add_token(app, "alice")[1])
    with write_locked(settings):
        response, elapsed = timed(lambda: upload(client, wheel, None, headers=headers))
    assert_retry_later(response)
    assert elapsed < QUICKLY
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    assert app.extensions["teamindex"].db.get_file(wheel.name) is None
    # The lock is gone: the very same upload goes through.
    response = upload(client, wheel, None, headers=headers)
    assert response.status_code == 200, response.status
    assert f"busy-demo/{wheel.name}" in stored_files(settings.data_dir)


def test_upload_over_the_wire_while_locked(app, live_server, wheel):
    settings = live_server.settings
    with write_locked(settings):
        (status, reason), elapsed = timed(lambda: post_upload(live_server.url, wheel, "alice"))
    assert status == 503, reason
    assert "busy" in reason
    assert elapsed < QUICKLY
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    assert post_upload(live_server.url, wheel, "alice") == (200, "OK")
    assert get(live_server.url, f"/files/busy-demo/{wheel.name}")[0] == 200


def test_yank_while_locked_answers_503(client, settings, wheel):
    assert upload(client, wheel).status_code == 200
    with write_locked(settings):
        response, elapsed = timed(
            lambda: client.post("/api/busy-demo/1.0/yank", headers=basic("alice"))
        )
    assert_retry_later(response)
    assert elapsed < QUICKLY
    assert client.post("/api/busy-demo/1.0/yank", headers=basic("alice")).status_code == 200


def test_docs_upload_while_locked_answers_503_and_leaves_no_build(client, settings, wheel):
    assert upload(client, wheel).status_code == 200
    url = "/docs/busy-demo/1.0/"
    with write_locked(settings):
        response, elapsed = timed(lambda: client.post(url, data=docs_zip(), headers=basic("alice")))
    assert_retry_later(response)
    assert elapsed < QUICKLY
    docs = settings.data_dir / "docs"
    assert [p for p in docs.rglob("*") if p.is_file()] == []
    assert temp_files(settings.data_dir) == []
    assert client.post(url, data=docs_zip(), headers=basic("alice")).status_code == 200
