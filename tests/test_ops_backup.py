"""`teamindex backup` / `restore`: a byte-identical round trip, also while uploads go on."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from ops_support import post_upload
from uploading import stored_files, upload

from teamindex.app import create_app
from teamindex.cli import main

JSON = "application/vnd.pypi.simple.v1+json"


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root/packages, by relative path."""
    packages = root / "packages"
    return {
        str(p.relative_to(packages)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(packages.rglob("*"))
        if p.is_file()
    }


def dump(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def populated(client, settings, tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    dists.mkdir()
    for version in ("1.0", "1.1", "2.0"):
        assert upload(client, make_wheel(dists, "demo", version)).status_code == 200
        assert upload(client, make_sdist(dists, "demo", version)).status_code == 200
    assert upload(client, make_wheel(dists, "other", "0.1"), user="bob").status_code == 200
    assert (
        main(["yank", "demo", "1.1", "--reason", "bad", "--data-dir", str(settings.data_dir)]) == 0
    )


def test_round_trip_is_byte_identical(populated, settings, client, tmp_path, capsys):
    dest = tmp_path / "backup"
    restored = tmp_path / "restored"
    assert main(["backup", str(dest), "--data-dir", str(settings.data_dir)]) == 0
    assert "backed up 7 files (" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == ["packages", "teamindex.sqlite3"]
    # A backup is one self-contained file (no -wal beside it) plus the files.
    assert tree(dest) == tree(settings.data_dir)
    assert main(["restore", str(dest), "--data-dir", str(restored)]) == 0
    assert "restored 7 files (" in capsys.readouterr().out
    assert tree(restored) == tree(settings.data_dir)
    assert dump(restored / "teamindex.sqlite3") == dump(settings.db_path)
    # The restored index serves the same pages.
    twin = create_app(settings.__class__(data_dir=restored, password_hash=settings.password_hash))
    for path in ("/simple/", "/simple/demo/", "/simple/other/"):
        headers = {**basic("alice"), "Accept": JSON}
        assert (
            twin.test_client().get(path, headers=headers).data
            == client.get(path, headers=headers).data
        )
    assert main(["check", "--data-dir", str(restored)]) == 0


def test_backup_hard_links_on_the_same_filesystem_or_copies(populated, settings, tmp_path):
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    assert main(["backup", str(linked), "--data-dir", str(settings.data_dir)]) == 0
    assert main(["backup", str(copied), "--copy", "--data-dir", str(settings.data_dir)]) == 0
    for name in stored_files(settings.data_dir):
        original = (settings.packages_dir / name).stat()
        assert (linked / "packages" / name).stat().st_ino == original.st_ino
        assert (copied / "packages" / name).stat().st_ino != original.st_ino
    assert tree(linked) == tree(copied)


def test_backup_refuses_a_non_empty_destination(populated, settings, tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "something").write_text("x")
    assert main(["backup", str(dest), "--data-dir", str(settings.data_dir)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_restore_refuses_a_non_empty_data_dir_and_a_non_backup(
    populated, settings, tmp_path, capsys
):
    assert main(["restore", str(tmp_path), "--data-dir", str(tmp_path / "new")]) == 1
    assert "not a teamindex backup" in capsys.readouterr().err
    dest = tmp_path / "backup"
    assert main(["backup", str(dest), "--data-dir", str(settings.data_dir)]) == 0
    assert main(["restore", str(dest), "--data-dir", str(settings.data_dir)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_restore_detects_a_damaged_backup(populated, settings, tmp_path, capsys):
    dest = tmp_path / "backup"
    assert main(["backup", str(dest), "--copy", "--data-dir", str(settings.data_dir)]) == 0
    victim = dest / "packages" / "demo" / "demo-2.0.tar.gz"
    victim.write_bytes(victim.read_bytes()[:-1] + b"!")
    assert main(["restore", str(dest), "--data-dir", str(tmp_path / "r")]) == 1
    assert "sha256 differs" in capsys.readouterr().err
    assert not (tmp_path / "r" / "teamindex.sqlite3").exists()


def test_online_backup_during_uploads_is_consistent(live_server, settings, tmp_path):
    """Uploads through a real server while `backup` runs: the backup is some consistent
    snapshot (every row has its file, nothing else), and it restores cleanly."""
    dists = tmp_path / "dists"
    dists.mkdir()
    wheels = [make_wheel(dists, "busy", f"1.{n}") for n in range(30)]
    done: list[int] = []

    def uploader() -> None:
        for wheel in wheels:
            done.append(post_upload(live_server.url, wheel, "alice")[0])

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        while len(done) < 10:
            threading.Event().wait(0.01)
        dest = tmp_path / "backup"
        assert main(["backup", str(dest), "--data-dir", str(settings.data_dir)]) == 0
    finally:
        thread.join(60)
    assert done == [200] * len(wheels)
    restored = tmp_path / "restored"
    assert main(["restore", str(dest), "--data-dir", str(restored)]) == 0
    assert main(["check", "--data-dir", str(restored)]) == 0
    count = len(tree(restored)) // 2  # each wheel has a .metadata file
    assert 10 <= count <= len(wheels)
