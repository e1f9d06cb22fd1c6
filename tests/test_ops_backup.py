"""`teamindex backup` / `restore`: a byte-identical round trip, also while uploads go on."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from ops_support import post_upload
from uploading import stored_files, upload
from web_support import docs_zip

from teamindex.app import create_app
from teamindex.cli import main
from teamindex.index.progress import format_bytes

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
    out, err = capsys.readouterr()
    size = sum((settings.packages_dir / name).stat().st_size for name in tree(dest))
    stored = sum(
        (settings.packages_dir / name).stat().st_size
        for name in tree(dest)
        if not name.endswith(".metadata")
    )
    assert out.splitlines() == [
        f"backed up to {dest}:",
        "  database: a consistent snapshot (teamindex.sqlite3)",
        f"  package files: 7 ({format_bytes(stored)}), all hard-linked, with their 4 "
        ".metadata files",
        "  docs: none",
        "hard-linked files are the data dir's own bytes on the same disk: they survive a "
        "deletion, not a lost disk; copy the backup to another machine (or use --copy)",
    ]
    assert size > stored
    # Not a terminal: one progress line per 10 %, the last at 100 %.
    progress = err.splitlines()
    assert progress[-1].startswith(
        f"backup: 100% (7/7 files, {format_bytes(stored)} of {format_bytes(stored)}) after "
    )
    assert 1 <= len(progress) <= 10
    assert sorted(p.name for p in dest.iterdir()) == ["packages", "teamindex.sqlite3"]
    # A backup is one self-contained file (no -wal beside it) plus the files.
    assert tree(dest) == tree(settings.data_dir)
    assert main(["restore", str(dest), "--data-dir", str(restored), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"restored into {restored}:",
        "  database: copied and migrated to the current schema",
        f"  package files: 7 ({format_bytes(stored)}), copied, each checked against its "
        "sha256, with their 4 .metadata files",
        "  docs: none",
    ]
    assert err == ""  # --quiet
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


# -- hosted docs ----------------------------------------------------------------------------------


def docs_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root/docs outside .incoming, by relative path."""
    docs = root / "docs"
    return {
        str(p.relative_to(docs)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(docs.rglob("*"))
        if p.is_file() and p.relative_to(docs).parts[0] != ".incoming"
    }


@pytest.fixture
def documented(populated, settings, tmp_path: Path) -> None:
    """Docs for demo 1.0 and 2.0 (2.0 uploaded twice: only its current build counts), a
    crash leftover in .incoming and a stray build directory, neither of which is backed up."""
    for version, title in (("1.0", "one"), ("2.0", "old"), ("2.0", "two")):
        archive = tmp_path / "docs.zip"
        archive.write_bytes(docs_zip({"index.html": title, "a/b.css": f"/* {title} */"}))
        assert (
            main(
                ["upload-docs", "demo", version, str(archive), "--data-dir", str(settings.data_dir)]
            )
            == 0
        )
    docs = settings.data_dir / "docs"
    (docs / ".incoming" / "docs-crashed").mkdir(parents=True)
    (docs / ".incoming" / "docs-crashed" / "index.html").write_text("half")
    (docs / "demo" / "1" / "20000101T000000stray").mkdir()
    (docs / "demo" / "1" / "20000101T000000stray" / "index.html").write_text("stray")


def current_docs(settings) -> dict[str, str]:
    """docs_tree of the data dir without the stray build."""
    return {k: v for k, v in docs_tree(settings.data_dir).items() if "stray" not in k}


@pytest.mark.parametrize("copy", [False, True], ids=["linked", "copied"])
def test_round_trip_includes_the_current_docs_builds(
    documented, settings, client, tmp_path, capsys, copy
):
    dest, restored = tmp_path / "backup", tmp_path / "restored"
    args = ["backup", str(dest), "--data-dir", str(settings.data_dir)]
    assert main(args + (["--copy"] if copy else [])) == 0
    out = capsys.readouterr().out.splitlines()
    how = "all copied" if copy else "all hard-linked"
    assert out[2].startswith("  package files: 7 (") and out[2].endswith(
        f"), {how}, with their 4 .metadata files"
    )
    assert out[3].startswith("  docs: 2 builds, 4 files (") and out[3].endswith(f"), {how}")
    assert ("--copy" in out[-1]) is not copy  # the hint about hard links, only when linked
    assert len(current_docs(settings)) == 4
    assert docs_tree(dest) == current_docs(settings)
    assert not (dest / "docs" / ".incoming").exists()
    index = next(name for name in docs_tree(dest) if name.startswith("demo/2/"))
    same_inode = (dest / "docs" / index).stat().st_ino == (
        settings.data_dir / "docs" / index
    ).stat().st_ino
    assert same_inode is not copy
    assert main(["restore", str(dest), "--data-dir", str(restored)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3].startswith("  docs: 2 builds, 4 files (")
    assert out[3].endswith("), copied, file counts and sizes checked")
    assert docs_tree(restored) == current_docs(settings)
    assert tree(restored) == tree(settings.data_dir)
    assert main(["check", "--data-dir", str(restored)]) == 0
    assert capsys.readouterr().out.endswith(" and 2 docs builds: ok\n")
    # The restored index serves the same docs.
    twin = create_app(settings.__class__(data_dir=restored, password_hash=settings.password_hash))
    for app_client in (twin.test_client(), client):
        with app_client.get(
            "/docs/demo/latest/", headers=basic("alice"), follow_redirects=True
        ) as response:
            assert (response.status_code, response.data) == (200, b"two")


def test_restore_refuses_a_backup_with_damaged_docs(documented, settings, tmp_path, capsys):
    dest = tmp_path / "backup"
    assert main(["backup", str(dest), "--copy", "--data-dir", str(settings.data_dir)]) == 0
    victim = next((dest / "docs" / "demo" / "2").rglob("b.css"))
    victim.write_text("/* longer than it was */")
    assert main(["restore", str(dest), "--data-dir", str(tmp_path / "r")]) == 1
    assert "docs build" in capsys.readouterr().err
    assert not (tmp_path / "r" / "teamindex.sqlite3").exists()


def test_backup_reports_a_docs_build_that_vanished(
    documented, settings, tmp_path, capsys, monkeypatch
):
    """A build replaced between the snapshot and the copy: exit 1, like a deleted file."""
    import teamindex.index.backup

    real = teamindex.index.backup.Database.all_docs_builds

    def and_vanish(self):
        builds = real(self)
        shutil.rmtree(settings.data_dir / "docs" / "demo" / "1")
        return builds

    monkeypatch.setattr(teamindex.index.backup.Database, "all_docs_builds", and_vanish)
    assert main(["backup", str(tmp_path / "b"), "--data-dir", str(settings.data_dir)]) == 1
    assert "missing (deleted during the backup?): " in capsys.readouterr().err


def test_restore_of_a_backup_made_before_docs_were_backed_up(
    documented, settings, tmp_path, capsys
):
    """Older backups have no docs/: the index is restored, the builds are listed as missing
    (re-upload them; `check` reports them too)."""
    dest = tmp_path / "backup"
    assert main(["backup", str(dest), "--data-dir", str(settings.data_dir)]) == 0
    shutil.rmtree(dest / "docs")
    capsys.readouterr()
    assert main(["restore", str(dest), "--data-dir", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "the backup has no docs/ (made by an older version): 2 docs builds not restored" in err
    assert tree(tmp_path / "r") == tree(settings.data_dir)
