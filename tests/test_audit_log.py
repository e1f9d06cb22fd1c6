"""The audit log (issue 10, low 10): `teamindex audit` shows the newest events first and
says when it stopped; refused uploads, yanks and docs uploads are audited with the reason,
a hidden project included (the caller's answer is still the missing project's)."""

from __future__ import annotations

import json

import pytest
from builders import make_wheel
from conftest import add_token, basic
from uploading import upload
from web_support import docs_zip

from teamindex import cli
from teamindex.models import AuditEvent


@pytest.fixture
def audit_cli(settings, capsys):
    def run(*args: str) -> list[str]:
        assert cli.main(["audit", *args, "--data-dir", str(settings.data_dir)]) == 0
        return capsys.readouterr().out.splitlines()

    return run


def test_audit_pages_newest_first_and_says_when_truncated(app, audit_cli):
    db = app.extensions["teamindex"].db
    for number in range(25):
        db.add_audit(
            AuditEvent("2030-01-01T00:00:00Z", "", "", None, "grant", "", "", "ok", str(number))
        )
    first = [json.loads(line) for line in audit_cli("--json", "--action", "grant", "--limit", "10")]
    assert [e["detail"] for e in first[:10]] == [str(n) for n in range(24, 14, -1)]
    assert first[10] == {"truncated": True, "before": first[9]["id"]}
    second = [
        json.loads(line)
        for line in audit_cli(
            "--json", "--action", "grant", "--limit", "10", "--before", str(first[9]["id"])
        )
    ]
    assert [e["detail"] for e in second[:10]] == [str(n) for n in range(14, 4, -1)]
    last = audit_cli(
        "--json", "--action", "grant", "--limit", "10", "--before", str(second[9]["id"])
    )
    assert len(last) == 5 and "truncated" not in last[-1]
    text = audit_cli("--action", "grant", "--limit", "3")
    assert text[-1].startswith("... truncated at 3 events; older ones: --before ")


def _denied(app, action: str) -> list[AuditEvent]:
    events = app.extensions["teamindex"].db.query_audit(since="2000", action=action)
    return [event for event in events if event.outcome == "denied"]


def test_refused_writes_are_audited_with_the_reason(app, client, tmp_path):
    for project, owner in (("secret-proj", "bob"), ("team-proj", "bob")):
        assert upload(client, make_wheel(tmp_path, project, "1.0"), owner).status_code == 200
    db = app.extensions["teamindex"].db
    assert db.set_visibility("secret-proj", "restricted")
    _id, read_token = add_token(app, "alice", scope="read")

    hidden = upload(client, make_wheel(tmp_path, "secret-proj", "2.0"), "alice")
    assert hidden.status_code == 404  # answered as a missing project
    by_token = client.post("/api/team-proj/1.0/yank", headers=basic("__token__", read_token))
    assert by_token.status_code == 403
    no_role = client.post("/api/team-proj/1.0/yank", headers=basic("alice"))
    assert no_role.status_code == 403
    assert client.post("/api/secret-proj/1.0/unyank", headers=basic("alice")).status_code == 404
    docs = client.post("/docs/secret-proj/1.0/", data=docs_zip(), headers=basic("alice"))
    assert docs.status_code == 404
    missing = client.post("/docs/no-such-proj/1.0/", data=docs_zip(), headers=basic("alice"))
    assert missing.status_code == 404

    [upload_event] = _denied(app, "upload")
    assert (upload_event.user, upload_event.project) == ("alice", "secret-proj")
    assert upload_event.detail == "hidden: restricted project"
    yanks = sorted((e.token_id is not None, e.detail) for e in _denied(app, "yank"))
    assert yanks == [
        (False, "not allowed"),
        (True, f"not allowed for token {_id} (scope or project list)"),
    ]
    [unyank] = _denied(app, "unyank")
    assert unyank.detail == "hidden: restricted project"
    docs_events = {e.project: e.detail for e in _denied(app, "docs_upload")}
    assert docs_events == {
        "secret-proj": "hidden: restricted project",
        "no-such-proj": "no such project",
    }
