"""`teamindex check [--repair]`: each kind of damage is found, debris is quarantined, live
temp files (uploads in flight) are left alone."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import basic
from uploading import upload
from web_support import docs_zip

from teamindex.app import create_app
from teamindex.cli import main
from teamindex.index import inflight
from teamindex.index.inflight import TempOwner, owner_alive, sweep_dead
from teamindex.index.storage import Storage


def check(settings, *args: str) -> int:
    return main(["check", "--data-dir", str(settings.data_dir), *args])


@pytest.fixture
def index(client, settings, tmp_path: Path) -> Path:
    """An index with one wheel (and its .metadata) and one sdist; returns packages/demo."""
    dists = tmp_path / "dists"
    dists.mkdir()
    for path in (make_wheel(dists, "demo", "1.0"), make_sdist(dists, "demo", "1.0")):
        assert upload(client, path).status_code == 200
    return settings.packages_dir / "demo"


WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"


def test_clean_index_is_ok(index, settings, capsys):
    assert check(settings) == 0
    out, err = capsys.readouterr()
    assert out.startswith("checked 2 files (")
    assert out.endswith("): ok\n")
    # Progress on stderr; not a terminal: a line per 10 % (two files: 2 lines at most).
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2
    assert lines[-1].startswith("check: 100% (2/2 files, ")
    assert check(settings, "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_check_draws_a_bar_on_a_terminal(index, settings, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert check(settings) == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\rcheck [")
    last = drawn.split("\r")[-1]  # one line redrawn in place, ended once
    assert re.fullmatch(r"check \[#{24}\] 100% 2/2 files, (\S+ \S+) of \1, done *\n", last)
    assert drawn.count("\n") == 1


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (lambda d: (d / SDIST).unlink(), f"missing: {{d}}/{SDIST}: no file for the row"),
        (
            lambda d: (d / f"{WHEEL}.metadata").unlink(),
            f"metadata-missing: {{d}}/{WHEEL}.metadata",
        ),
    ],
)
def test_missing_files_are_reported_and_not_repaired(index, settings, capsys, damage, kind):
    damage(index)
    assert check(settings) == 1
    out = capsys.readouterr().out
    assert kind.format(d=index) in out
    assert "again (the same file) to restore it" in out
    # --repair cannot make bytes up; it says so and still fails.
    assert check(settings, "--repair") == 1
    out = capsys.readouterr().out
    assert kind.format(d=index) in out
    assert out.endswith("1 problem(s)\n")
    assert not (settings.data_dir / "quarantine").exists()


@pytest.mark.parametrize(
    ("name", "damage", "kind", "then"),
    [
        (SDIST, flip_last_byte, "sha256: {p}: content differs", "missing"),
        (SDIST, lambda p: p.write_bytes(b"short"), "size: {p}: 5 bytes, the row", "missing"),
        (WHEEL, flip_last_byte, "sha256: {p}: content differs", "missing"),
        (WHEEL, lambda p: p.write_bytes(b""), "size: {p}: 0 bytes, the row", "missing"),
        (f"{WHEEL}.metadata", flip_last_byte, "metadata-sha256: {p}", "metadata-missing"),
    ],
)
def test_damaged_files_are_quarantined_and_their_row_kept(
    index, settings, client, capsys, name, damage, kind, then
):
    """Bytes that do not match their row: --repair moves them out of the way (the row
    stays: it says what the bytes must be), so the file is missing, not wrong, until an
    upload of the same file restores it."""
    path = index / name
    good = path.read_bytes()
    damage(path)
    bad = path.read_bytes()
    assert check(settings) == 1
    assert kind.format(p=path) in capsys.readouterr().out

    assert check(settings, "--repair") == 1
    out = capsys.readouterr().out
    assert kind.format(p=path) in out and "(quarantined)" in out
    assert f"{then}: {path}: quarantined as damaged; upload " in out
    assert out.endswith("1 problem(s)\n")
    quarantine = next((settings.data_dir / "quarantine").iterdir())
    assert (quarantine / "packages" / "demo" / name).read_bytes() == bad
    assert not path.exists()
    assert (index / WHEEL).exists() or name != f"{WHEEL}.metadata"

    assert check(settings) == 1  # still missing: only the right bytes heal it
    out = capsys.readouterr().out
    assert f"{then}: {path}: " in out and "again (the same file) to restore it" in out
    served = client.get(f"/files/demo/{name}", headers=basic("alice"))
    assert served.status_code == 404
    assert "missing from storage" in served.get_data(as_text=True)
    assert "upload" in served.get_data(as_text=True)
    assert client.get("/simple/demo/", headers=basic("alice")).status_code == 200  # row kept
    dist = name.removesuffix(".metadata")
    assert upload_again(client, settings, dist) == "restored"
    assert path.read_bytes() == good
    events = client.application.extensions["teamindex"].db.query_audit(
        since="2000", action="upload"
    )
    assert [(e.filename, e.outcome) for e in events][-1] == (dist, "restored")
    assert check(settings) == 0


def upload_again(client, settings, filename: str) -> str:
    """Upload the original of *filename* (in the fixture's dists/) again."""
    response = upload(client, settings.data_dir.parent / "dists" / filename)
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    return "restored" if "restored from this upload" in text else text


def test_other_bytes_do_not_restore_a_quarantined_file(index, settings, client, capsys, tmp_path):
    flip_last_byte(index / WHEEL)
    assert check(settings, "--repair") == 1
    (tmp_path / "other").mkdir()
    impostor = make_wheel(tmp_path / "other", "demo", "1.0", padding=3)
    assert impostor.name == WHEEL
    response = upload(client, impostor)
    assert response.status_code == 400
    assert "File already exists" in response.get_data(as_text=True)
    assert not (index / WHEEL).exists()
    capsys.readouterr()
    assert check(settings) == 1
    assert f"missing: {index / WHEEL}: " in capsys.readouterr().out


def dead_owner_debris(tmp_dir: Path) -> list[Path]:
    """What a process killed mid-upload leaves in tmp/: its owner lock (no longer held) and a
    partial upload and metadata temp file named after it."""
    owner = TempOwner(tmp_dir)
    token = owner.token
    paths = [
        tmp_dir / f"owner-{token}.lock",
        tmp_dir / f"upload-{token}-abc123.part",
        tmp_dir / f"meta-{token}-def456.part",
    ]
    for path in paths[1:]:
        path.write_bytes(b"partial")
    os.close(owner._fd)  # the kernel drops the lock as at process death; the file stays
    owner._fd = None
    return paths


def test_repair_quarantines_strays_and_stale_temp_files(index, settings, capsys):
    stray = index / "demo-0.9-py3-none-any.whl"
    stray.write_bytes(b"left by a crash between publish and commit")
    orphan_dir = settings.packages_dir / "ghost"
    orphan_dir.mkdir()
    (orphan_dir / "ghost-1.0.tar.gz").write_bytes(b"x")
    debris = dead_owner_debris(settings.tmp_dir)
    old_unknown = settings.tmp_dir / "something-else"
    old_unknown.write_bytes(b"?")
    os.utime(old_unknown, (1_000_000_000, 1_000_000_000))

    assert check(settings) == 1
    out = capsys.readouterr().out
    assert out.count("stray: ") == 2
    assert out.count("temp: ") == 4
    assert out.endswith("6 problem(s)\n")

    assert check(settings, "--repair") == 0
    out = capsys.readouterr().out
    assert out.count("(quarantined)") == 6
    quarantine = next((settings.data_dir / "quarantine").iterdir())
    assert f"quarantined into {quarantine}" in out
    assert (
        (quarantine / "packages/demo/demo-0.9-py3-none-any.whl").read_bytes().startswith(b"left by")
    )
    assert (quarantine / "packages/ghost/ghost-1.0.tar.gz").exists()
    assert sorted(p.name for p in (quarantine / "tmp").iterdir()) == sorted(
        [p.name for p in debris] + ["something-else"]
    )
    assert not stray.exists()
    assert check(settings) == 0


def test_live_temp_files_are_left_alone(index, settings, capsys):
    """A temp file whose owner process is alive is an upload in flight, however old."""
    storage = Storage(settings.packages_dir, settings.tmp_dir)
    temp = storage.new_temp()
    temp.write(b"half an upload")
    os.utime(temp.path, (1_000_000_000, 1_000_000_000))
    fresh_unknown = settings.tmp_dir / "healthz-probe"
    fresh_unknown.write_bytes(b"")
    try:
        assert check(settings, "--repair") == 0
        assert "temp: " not in capsys.readouterr().out
        assert temp.path.exists()
        assert fresh_unknown.exists()
    finally:
        temp.discard()
        storage.owner.release()


def test_server_start_sweeps_what_dead_processes_left(index, settings, capsys, caplog):
    """After a crash the restarted server deletes the temp and lock files of dead owners (an
    upload cut off never got a row), so `check` is clean; it leaves live owners' files,
    files it cannot attribute, and strays in packages/ (damage check must still report)."""
    debris = dead_owner_debris(settings.tmp_dir)
    live = Storage(settings.packages_dir, settings.tmp_dir)
    in_flight = live.new_temp()
    in_flight.write(b"an upload in flight")
    unknown = settings.tmp_dir / "healthz-abandoned"
    unknown.write_bytes(b"")
    stray = index / "demo-0.9-py3-none-any.whl"
    stray.write_bytes(b"renamed into packages/ by a crashed upload, no row")
    try:
        with caplog.at_level(logging.WARNING, logger="teamindex"):
            restarted = create_app(settings)
        restarted.extensions["teamindex"].db.close()
        assert not any(path.exists() for path in debris)
        assert in_flight.path.exists()
        assert unknown.exists()
        assert stray.exists()
        (message,) = [r.getMessage() for r in caplog.records if "swept" in r.getMessage()]
        assert message.startswith("swept 3 file(s), 14 bytes, left in ")
        for path in debris:
            assert path.name in message
        assert check(settings) == 1
        out = capsys.readouterr().out
        assert "stray: " in out and "temp: " not in out
    finally:
        in_flight.discard()
        live.owner.release()
    stray.unlink()
    assert check(settings) == 0


def test_an_owner_whose_new_lock_is_swept_claims_another(settings, monkeypatch):
    """A sweeper may unlink a lock file between the owner's O_CREAT and its flock (the file
    looks free): the owner must notice and claim a new one, or its uploads in flight would
    look dead to the next sweep and be deleted."""
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    real_open = os.open
    swept: list[str] = []
    sweeping: list[bool] = []

    def open_then_sweep(path, flags, *args):
        fd = real_open(path, flags, *args)
        if not sweeping and flags & os.O_CREAT and Path(path).name.startswith("owner-"):
            sweeping.append(True)  # once, and not from inside the sweep
            swept.extend(p.name for p, _size in sweep_dead(settings.tmp_dir))
        return fd

    monkeypatch.setattr(inflight.os, "open", open_then_sweep)
    owner = TempOwner(settings.tmp_dir)
    try:
        token = owner.token
        monkeypatch.undo()
        assert len(swept) == 1 and token not in swept[0]  # the first claim was swept
        assert (settings.tmp_dir / f"owner-{token}.lock").exists()
        assert owner_alive(settings.tmp_dir, token)
        assert sweep_dead(settings.tmp_dir) == []  # held: alive, left alone
    finally:
        owner.release()


def test_check_on_an_empty_index(settings, app, capsys):
    assert check(settings) == 0
    assert capsys.readouterr().out == "checked 0 files (0 bytes): ok\n"


def test_check_needs_an_existing_data_dir(tmp_path, capsys):
    assert main(["check", "--data-dir", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


# -- hosted docs ----------------------------------------------------------------------------------

OLD = 1_000_000_000  # an mtime long past the grace period of uploads in flight


def age(path: Path) -> Path:
    """Make a file or tree look old (check leaves young docs debris alone: in flight)."""
    for entry in [path, *path.rglob("*")]:
        os.utime(entry, (OLD, OLD))
    return path


@pytest.fixture
def docs(index, settings, tmp_path: Path) -> Path:
    """Docs for demo 1.0; returns data/docs/demo/1/<build>."""
    archive = tmp_path / "docs.zip"
    archive.write_bytes(docs_zip())
    assert (
        main(["upload-docs", "demo", "1.0", str(archive), "--data-dir", str(settings.data_dir)])
        == 0
    )
    (build,) = (settings.data_dir / "docs" / "demo" / "1").iterdir()
    return build


def test_clean_index_with_docs_is_ok(docs, settings, capsys):
    capsys.readouterr()
    assert check(settings) == 0
    assert capsys.readouterr().out.endswith(" and 1 docs builds: ok\n")


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (shutil.rmtree, "docs-missing: {b}: the row of demo 1.0 names it"),
        (lambda b: (b / "_static" / "site.css").unlink(), "docs-size: {b}: 3 files, "),
        (lambda b: (b / "index.html").write_text("x"), "docs-size: {b}: 4 files, "),
    ],
)
def test_docs_damage_is_reported_and_not_repaired(docs, settings, capsys, damage, kind):
    damage(docs)
    assert check(settings) == 1
    assert kind.format(b=docs) in capsys.readouterr().out
    assert check(settings, "--repair") == 1
    assert capsys.readouterr().out.endswith("1 problem(s)\n")
    assert not (settings.data_dir / "quarantine").exists()


def test_repair_quarantines_docs_strays_and_incoming_leftovers(docs, settings, capsys):
    root = settings.data_dir / "docs"
    old_build = docs.parent / "20200101T000000deadbeef"  # replaced, removal cut short
    shutil.copytree(docs, old_build)
    age(old_build)
    deleted = root / "gone" / "2" / "20200101T000000cafe0000"  # a deleted project's build
    deleted.mkdir(parents=True)
    age(deleted)
    loose = root / "demo" / "notes.txt"
    loose.write_text("a file where only version directories belong")
    age(loose)
    leftover = root / ".incoming" / "docs-crashed"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "page.html").write_text("half")
    age(leftover)
    capsys.readouterr()

    assert check(settings) == 1
    out = capsys.readouterr().out
    assert out.count("docs-stray: ") == 3
    assert f"docs-stray: {old_build}: no docs row names it" in out
    assert f"docs-incoming: {leftover}: left by a dead upload" in out
    assert out.endswith("4 problem(s)\n")

    assert check(settings, "--repair") == 0
    out = capsys.readouterr().out
    assert out.count("(quarantined)") == 4
    quarantine = next((settings.data_dir / "quarantine").iterdir())
    assert (quarantine / "docs/demo/1/20200101T000000deadbeef/index.html").is_file()
    assert (quarantine / "docs/gone/2/20200101T000000cafe0000").is_dir()
    assert (quarantine / "docs/demo/notes.txt").is_file()
    assert (quarantine / "docs/.incoming/docs-crashed/sub/page.html").read_text() == "half"
    assert docs.is_dir() and not old_build.exists() and not leftover.exists()
    assert check(settings) == 0


def test_young_docs_debris_is_left_alone(docs, settings, capsys):
    """An upload in flight: unpacking in .incoming, or renamed into place and about to
    commit its row. Both look like debris only after the grace period."""
    unpacking = settings.data_dir / "docs" / ".incoming" / "docs-busy"
    (unpacking / "deep").mkdir(parents=True)
    age(unpacking)
    (unpacking / "deep" / "page.html").write_text("being written")  # fresh
    renamed = docs.parent / "20990101T000000feedface"
    shutil.copytree(docs, renamed)
    capsys.readouterr()
    assert check(settings, "--repair") == 0
    assert "docs-" not in capsys.readouterr().out
    assert unpacking.exists() and renamed.exists()
