"""Operations commands: yank, unyank, delete and config, run through cli.main next to a live app
(as an operator runs them next to the server: another connection, same data dir)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from uploading import stored_files, upload
from web_support import docs_zip

from teamindex.cli import main

JSON = "application/vnd.pypi.simple.v1+json"


def cli(settings, *args: str) -> int:
    return main([args[0], "--data-dir", str(settings.data_dir), *args[1:]])


def page(client, project: str = "demo"):
    return client.get(f"/simple/{project}/", headers={**basic("alice"), "Accept": JSON})


@pytest.fixture
def demo(client, tmp_path: Path) -> dict[str, Path]:
    """demo 1.0 (wheel + sdist) and 2.0 (wheel), uploaded by alice."""
    dists = tmp_path / "dists"
    dists.mkdir()
    paths = {
        "w1": make_wheel(dists, "demo", "1.0"),
        "s1": make_sdist(dists, "demo", "1.0"),
        "w2": make_wheel(dists, "demo", "2.0"),
    }
    for path in paths.values():
        assert upload(client, path).status_code == 200
    return paths


def yanked(client) -> dict[str, object]:
    return {f["filename"]: f["yanked"] for f in page(client).json["files"]}


def test_yank_and_unyank_change_the_page_and_its_etag(client, settings, demo, capsys):
    before = page(client)
    assert cli(settings, "yank", "Demo", "1.0", "--reason", "broken build") == 0
    assert capsys.readouterr().out == "yanked demo 1.0\n"
    after = page(client)
    assert after.headers["ETag"] != before.headers["ETag"]
    assert yanked(client) == {
        "demo-1.0-py3-none-any.whl": "broken build",
        "demo-1.0.tar.gz": "broken build",
        "demo-2.0-py3-none-any.whl": False,
    }
    html = client.get("/simple/demo/", headers=basic("alice")).get_data(as_text=True)
    assert html.count('data-yanked="broken build"') == 2
    assert cli(settings, "unyank", "demo", "1.0.0") == 0  # canonical version matches
    assert set(yanked(client).values()) == {False}


def test_yank_without_reason_is_true(client, settings, demo):
    assert cli(settings, "yank", "demo", "2.0") == 0
    assert yanked(client)["demo-2.0-py3-none-any.whl"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("yank", "demo", "3.0"), "no release 3.0 of project 'demo'"),
        (("yank", "nope", "1.0"), "no release 1.0 of project 'nope'"),
        (("yank", "demo", "not a version"), "invalid version 'not a version'"),
        (("delete", "nope", "--yes"), "no project 'nope'"),
        (("delete", "demo", "3.0", "--yes"), "nothing to delete: no file matches demo 3.0"),
        (
            ("delete", "demo", "1.0", "demo-2.0-py3-none-any.whl", "--yes"),
            "nothing to delete: no file matches demo 1.0 demo-2.0-py3-none-any.whl",
        ),
    ],
)
def test_errors_are_one_line_and_exit_1(settings, demo, capsys, args, message):
    assert cli(settings, *args) == 1
    assert capsys.readouterr().err == f"teamindex: error: {message}\n"


def test_delete_without_yes_lists_and_changes_nothing(client, settings, demo, capsys):
    files_before = stored_files(settings.data_dir)
    assert cli(settings, "delete", "demo", "1.0") == 1
    out = capsys.readouterr().out
    assert "would delete demo 1.0: 2 file(s)" in out
    assert "demo-1.0.tar.gz" in out
    assert stored_files(settings.data_dir) == files_before
    assert len(page(client).json["files"]) == 3


def deleted_files(settings) -> dict[str, str]:
    with sqlite3.connect(settings.db_path) as conn:
        return dict(conn.execute("SELECT filename, sha256 FROM deleted_files").fetchall())


def test_delete_one_file(client, settings, demo):
    etag = page(client).headers["ETag"]
    assert cli(settings, "delete", "demo", "1.0", "demo-1.0.tar.gz", "--yes") == 0
    response = page(client)
    assert response.headers["ETag"] != etag
    assert [f["filename"] for f in response.json["files"]] == [
        "demo-1.0-py3-none-any.whl",
        "demo-2.0-py3-none-any.whl",
    ]
    assert "demo/demo-1.0.tar.gz" not in stored_files(settings.data_dir)
    assert list(deleted_files(settings)) == ["demo-1.0.tar.gz"]
    download = client.get("/files/demo/demo-1.0.tar.gz", headers=basic("alice"))
    assert download.status_code == 404
    assert cli(settings, "check") == 0


def test_deleted_filename_never_returns_with_other_bytes(client, settings, demo, tmp_path):
    assert cli(settings, "delete", "demo", "2.0", "--yes") == 0
    assert page(client).json["versions"] == ["1.0"]
    other = tmp_path / "other"
    other.mkdir()
    changed = make_wheel(other, "demo", "2.0", summary="different bytes")
    response = upload(client, changed)
    assert response.status_code == 400
    assert "previously used by a file that has since been deleted" in response.status
    # The very same bytes may come back (an undo), as on PyPI.
    assert upload(client, demo["w2"]).status_code == 200
    assert "demo-2.0-py3-none-any.whl" in [f["filename"] for f in page(client).json["files"]]


def test_delete_release_removes_it_and_its_metadata_files(client, settings, demo):
    assert "demo/demo-1.0-py3-none-any.whl.metadata" in stored_files(settings.data_dir)
    assert cli(settings, "delete", "demo", "1.0", "--yes") == 0
    assert stored_files(settings.data_dir) == [
        "demo/demo-2.0-py3-none-any.whl",
        "demo/demo-2.0-py3-none-any.whl.metadata",
    ]
    assert page(client).json["versions"] == ["2.0"]
    assert set(deleted_files(settings)) == {"demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"}


def test_delete_project(client, settings, demo):
    root = client.get("/simple/", headers={**basic("alice"), "Accept": JSON})
    assert cli(settings, "delete", "demo", "--yes") == 0
    assert page(client).status_code == 404
    after = client.get("/simple/", headers={**basic("alice"), "Accept": JSON})
    assert after.json["projects"] == []
    assert after.headers["ETag"] != root.headers["ETag"]
    assert stored_files(settings.data_dir) == []
    assert len(deleted_files(settings)) == 3
    # The name is free again (bob may now own it), but not the deleted filenames.
    assert upload(client, demo["w1"], user="bob").status_code == 200


def test_delete_crash_between_commit_and_unlink_leaves_only_strays(
    client, settings, demo, monkeypatch, capsys
):
    """Rows go in one transaction; files after the commit. A crash in between (simulated:
    the unlink never happens) leaves unreferenced files only, which check finds."""
    monkeypatch.setattr("teamindex.index.storage.local.Storage.remove", lambda self, *paths: None)
    assert cli(settings, "delete", "demo", "1.0", "--yes") == 0
    monkeypatch.undo()
    assert page(client).json["versions"] == ["2.0"]
    capsys.readouterr()
    assert cli(settings, "check") == 1
    out = capsys.readouterr().out
    assert out.count("stray: ") == 3  # two dists and one .metadata
    assert cli(settings, "check", "--repair") == 0
    assert cli(settings, "check") == 0
    quarantined = list((settings.data_dir / "quarantine").rglob("*.tar.gz"))
    assert [p.name for p in quarantined] == ["demo-1.0.tar.gz"]


def test_config_shows_values_and_sources(settings, monkeypatch, capsys):
    monkeypatch.setenv("TEAMINDEX_THREADS", "3")
    monkeypatch.setenv("TEAMINDEX_METRICS_ALLOW", "10.0.0.0/8, 127.0.0.1")
    assert cli(settings, "config", "--port", "9000") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"data_dir = {settings.data_dir}  # flag --data-dir" in lines
    assert "port = 9000  # flag --port" in lines
    assert "threads = 3  # env TEAMINDEX_THREADS" in lines
    assert "host = 127.0.0.1  # default" in lines
    assert "metrics_allow = 10.0.0.0/8,127.0.0.1  # env TEAMINDEX_METRICS_ALLOW" in lines


def test_config_rejects_a_bad_network(settings, monkeypatch, capsys):
    monkeypatch.setenv("TEAMINDEX_METRICS_ALLOW", "10.0.0.0/33")
    assert cli(settings, "config") == 1
    assert "TEAMINDEX_METRICS_ALLOW" in capsys.readouterr().err


def test_every_ops_command_has_help(capsys):
    for name in ("yank", "unyank", "delete", "backup", "restore", "check", "config"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: teamindex {name}")
        assert len(out.split("\n\n")[1].strip()) > 20  # the docstring


def upload_docs(settings, tmp_path: Path, version: str) -> None:
    archive = tmp_path / f"docs-{version}.zip"
    archive.write_bytes(docs_zip())
    assert cli(settings, "upload-docs", "demo", version, str(archive)) == 0


def docs_versions(settings) -> list[str]:
    root = settings.data_dir / "docs" / "demo"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_delete_removes_the_docs_of_deleted_releases(client, settings, demo, tmp_path):
    """The CLI removes docs like the admin page does (one shared function): a release that
    lost its last file takes its docs build with it; a project takes all of them."""
    upload_docs(settings, tmp_path, "1.0")
    upload_docs(settings, tmp_path, "2.0")
    assert cli(settings, "delete", "demo", "1.0", "demo-1.0.tar.gz", "--yes") == 0
    assert docs_versions(settings) == ["1", "2"]  # canonical versions; 1.0 keeps its wheel
    assert cli(settings, "delete", "demo", "1.0", "--yes") == 0
    assert docs_versions(settings) == ["2"]
    assert cli(settings, "delete", "demo", "--yes") == 0
    assert not (settings.data_dir / "docs" / "demo").exists()
    assert cli(settings, "check") == 0
