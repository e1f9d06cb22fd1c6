"""Who downloaded what (`serve --audit-downloads`, issue 12): off by default, downloads are
only counted per file per day; on, each download is an audit event (user, token id, project,
filename, address) that `teamindex audit --action download --user U` lists. The rows are
queued and written in one batch per flush: a download never writes, on or off."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from builders import make_wheel
from conftest import add_token, basic
from test_ops_busy import QUICKLY, timed, write_locked
from uploading import upload
from web_support import login

from teamindex import cli
from teamindex.access import audit as audit_module


@pytest.fixture
def audited(make_app):
    return make_app(audit_downloads=True)


@pytest.fixture
def audit_cli(capsys):
    def run(app, *args: str) -> list[dict]:
        data_dir = str(app.extensions["teamindex"].settings.data_dir)
        assert cli.main(["audit", *args, "--json", "--data-dir", data_dir]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    return run


def _publish(app, tmp_path) -> str:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    assert upload(app.test_client(), wheel, "alice").status_code == 200
    return f"/files/demo/{wheel.name}"


def _get(client, url: str, headers: dict[str, str], ip: str = "10.0.0.9") -> int:
    response = client.get(url, headers=headers, environ_base={"REMOTE_ADDR": ip})
    response.get_data()
    response.close()
    return response.status_code


def test_downloads_are_recorded_per_user_when_asked(audited, audit_cli, tmp_path):
    url = _publish(audited, tmp_path)
    token_id, secret = add_token(audited, "bob", scope="read")
    client = audited.test_client()
    assert _get(client, url, basic("bob"), ip="10.0.0.1") == 200
    assert _get(client, url, basic("__token__", secret), ip="10.0.0.2") == 200
    assert _get(client, url, basic("alice"), ip="10.0.0.3") == 200
    assert _get(client, url + ".metadata", basic("bob")) == 200  # metadata: not a download
    assert _get(client, url, basic("bob", "wrong")) == 401  # refused: not a download
    browser = audited.test_client()
    login(browser, "root")
    assert _get(browser, url, {}, ip="10.0.0.4") == 200  # the web session's link
    audited.extensions["teamindex"].audit.flush()
    rows = audit_cli(audited, "--action", "download", "--user", "bob")
    assert [
        (r["user"], r["token_id"], r["project"], r["filename"], r["ip"], r["outcome"]) for r in rows
    ] == [
        ("bob", token_id, "demo", url.rsplit("/", 1)[1], "10.0.0.2", "ok"),
        ("bob", None, "demo", url.rsplit("/", 1)[1], "10.0.0.1", "ok"),
    ]
    assert [r["ip"] for r in audit_cli(audited, "--action", "download", "--user", "alice")] == [
        "10.0.0.3"
    ]
    assert [r["ip"] for r in audit_cli(audited, "--action", "download", "--user", "root")] == [
        "10.0.0.4"
    ]
    everyone = audit_cli(audited, "--action", "download")
    assert [r["count"] for r in everyone if "count" in r] == [4]  # the daily count, as before


def test_off_by_default_only_counts(app, audit_cli, tmp_path):
    url = _publish(app, tmp_path)
    assert app.extensions["teamindex"].settings.audit_downloads is False
    assert _get(app.test_client(), url, basic("bob")) == 200
    app.extensions["teamindex"].audit.flush()
    assert audit_cli(app, "--action", "download", "--user", "bob") == []
    rows = audit_cli(app, "--action", "download")
    assert [(r["filename"], r["count"]) for r in rows] == [(url.rsplit("/", 1)[1], 1)]


def _statements(app) -> Iterator[list[str]]:
    with app.app_context():
        conn = app.extensions["teamindex"].db.conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        conn.set_trace_callback(None)


@pytest.mark.parametrize("recording", [False, True])
def test_a_download_writes_nothing_and_a_flush_writes_one_batch(make_app, tmp_path, recording):
    """Off: no statement beyond today's; on: still none per download (the rows wait in
    memory), then one INSERT batch for all of them."""
    app = make_app(audit_downloads=recording)
    url = _publish(app, tmp_path)
    client = app.test_client()
    assert _get(client, url, basic("bob")) == 200  # warm: the login is remembered
    app.extensions["teamindex"].audit.flush()
    per_download = []
    for _ in range(5):
        trace = _statements(app)
        statements = next(trace)
        assert _get(client, url, basic("bob")) == 200
        trace.close()
        per_download.append(statements)
    assert all(not any("INSERT" in s or "UPDATE" in s for s in st) for st in per_download)
    counts = {len(st) for st in per_download}
    trace = _statements(app)
    statements = next(trace)
    app.extensions["teamindex"].audit.flush()
    trace.close()
    audit_inserts = [s for s in statements if s.startswith("INSERT INTO audit")]
    assert len(audit_inserts) == (5 if recording else 0)  # executemany: one batch, 5 rows
    assert len(counts) == 1


def test_recording_adds_no_statement_to_a_download(app, tmp_path):
    url = _publish(app, tmp_path)
    client = app.test_client()
    assert _get(client, url, basic("bob")) == 200  # warm: the login is remembered
    audit = app.extensions["teamindex"].audit

    def cost() -> int:
        trace = _statements(app)
        statements = next(trace)
        assert _get(client, url, basic("bob")) == 200
        trace.close()
        return len(statements)

    off = cost()
    audit.record_downloads = True  # what --audit-downloads sets
    assert cost() == off


def test_a_busy_database_neither_slows_a_download_nor_loses_its_record(
    make_app, audit_cli, tmp_path, monkeypatch
):
    app = make_app(audit_downloads=True)
    url = _publish(app, tmp_path)
    settings = app.extensions["teamindex"].settings
    monkeypatch.setattr(audit_module, "FLUSH_SECONDS", 0.0)  # every download flushes
    with write_locked(settings):
        status, elapsed = timed(lambda: _get(app.test_client(), url, basic("bob")))
        assert (status, elapsed < QUICKLY) == (200, True)
    app.extensions["teamindex"].audit.flush()
    assert len(audit_cli(app, "--action", "download", "--user", "bob")) == 1
