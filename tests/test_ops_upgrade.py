"""Upgrades: a data dir written at schema version 1 (only migration 0001, with rows in it) is
migrated in place on start-up and keeps serving everything it held."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import FAST_HASH, PASSWORD, basic
from uploading import upload

from teamindex.access.auth import hash_password
from teamindex.app import create_app
from teamindex.cli import main
from teamindex.config import Settings
from teamindex.db.core import migration_scripts

JSON = "application/vnd.pypi.simple.v1+json"
OLD_TIME = "2024-01-02T03:04:05.000000Z"


def latest_version() -> int:
    return max(number for number, _script in migration_scripts())


def make_v1_data_dir(data_dir: Path, tmp_path: Path) -> Path:
    """What teamindex 0.1 left behind: schema 1, one admin, one user, demo 1.0 on disk."""
    script = resources.files("teamindex.migrations").joinpath("0001_initial.sql").read_text()
    (data_dir / "packages" / "demo").mkdir(parents=True)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    data = wheel.read_bytes()
    (data_dir / "packages" / "demo" / wheel.name).write_bytes(data)
    conn = sqlite3.connect(data_dir / "teamindex.sqlite3")
    try:
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = 1;\nCOMMIT;")
        for uid, name, admin in ((1, "root", 1), (2, "alice", 0)):
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                (uid, name, hash_password(PASSWORD, FAST_HASH), admin, OLD_TIME),
            )
        conn.execute("UPDATE state SET serial = 7")
        conn.execute("INSERT INTO projects VALUES (1, 'demo', 'Demo', ?, 7)", (OLD_TIME,))
        conn.execute("INSERT INTO roles VALUES (2, 1, 'owner')")
        conn.execute(
            "INSERT INTO releases (id, project_id, version, canonical_version, summary,"
            " metadata_json, created, yanked, yanked_reason)"
            " VALUES (1, 1, '1.0', '1', 'old', ?, ?, 1, 'superseded')",
            (json.dumps({"name": "Demo"}), OLD_TIME),
        )
        conn.execute(
            "INSERT INTO files (release_id, filename, packagetype, python_version, size,"
            " sha256, blake2_256, md5, upload_time, uploader_id)"
            " VALUES (1, ?, 'bdist_wheel', 'py3', ?, ?, ?, ?, ?, 2)",
            (
                wheel.name,
                len(data),
                hashlib.sha256(data).hexdigest(),
                hashlib.blake2b(data, digest_size=32).hexdigest(),
                hashlib.md5(data).hexdigest(),
                OLD_TIME,
            ),
        )
        conn.execute(
            "INSERT INTO deleted_files VALUES ('demo-0.9.tar.gz', ?, ?)", ("ab" * 32, OLD_TIME)
        )
        conn.commit()
    finally:
        conn.close()
    return wheel


@pytest.fixture
def old_dir(tmp_path: Path) -> tuple[Settings, Path]:
    settings = Settings(data_dir=tmp_path / "data", password_hash=FAST_HASH)
    (tmp_path / "dists").mkdir()
    wheel = make_v1_data_dir(settings.data_dir, tmp_path / "dists")
    return settings, wheel


def schema_version(settings: Settings) -> int:
    conn = sqlite3.connect(settings.db_path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_a_version_1_data_dir_is_migrated_and_keeps_its_content(old_dir, tmp_path):
    settings, wheel = old_dir
    assert latest_version() > 1, "nothing to upgrade to: add this test's twin for 0003"
    app = create_app(settings)
    assert schema_version(settings) == latest_version()
    client = app.test_client()
    page = client.get("/simple/demo/", headers={**basic("alice"), "Accept": JSON})
    assert page.status_code == 200
    (entry,) = page.json["files"]
    assert entry["filename"] == wheel.name
    assert entry["yanked"] == "superseded"
    assert entry["upload-time"] == OLD_TIME
    assert entry["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    download = client.get(f"/files/demo/{wheel.name}", headers=basic("alice"))
    assert download.data == wheel.read_bytes()
    download.close()
    # The old owner still owns it; the new serial continues from the old one.
    newer = make_wheel(tmp_path / "dists", "demo", "2.0")
    assert upload(client, newer).status_code == 200
    assert upload(client, make_wheel(tmp_path / "dists", "demo", "3.0"), user="root").status == (
        "200 OK"
    )
    # The deleted-filename rule survived the migration.
    conn = sqlite3.connect(settings.db_path)
    try:
        assert conn.execute("SELECT serial FROM state").fetchone()[0] > 7
        assert conn.execute("SELECT count(*) FROM deleted_files").fetchone()[0] == 1
    finally:
        conn.close()


def test_cli_commands_migrate_too_and_migrating_twice_is_a_no_op(old_dir, capsys):
    settings, _wheel = old_dir
    assert main(["check", "--data-dir", str(settings.data_dir)]) == 0
    assert schema_version(settings) == latest_version()
    before = sqlite3.connect(settings.db_path)
    try:
        dump = list(before.iterdump())
    finally:
        before.close()
    create_app(settings)
    after = sqlite3.connect(settings.db_path)
    try:
        assert list(after.iterdump()) == dump
    finally:
        after.close()
    assert "checked 1 files" in capsys.readouterr().out


def _script(number: int) -> str:
    return dict(migration_scripts())[number]


@pytest.fixture
def v4_dir(old_dir) -> Settings:
    """A data dir at schema 4 with rows in every table that points at users: tokens, a
    per-user allowlist entry, roles, an uploaded file and a docs build (bob uploaded them),
    and a deleted user."""
    settings, _wheel = old_dir
    conn = sqlite3.connect(settings.db_path)
    try:
        for number in (2, 3, 4):
            conn.executescript(
                f"BEGIN;\n{_script(number)}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        conn.execute("PRAGMA foreign_keys = ON")
        for uid, name in ((3, "bob"), (4, "leaver")):
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, 0, ?)",
                (uid, name, hash_password(PASSWORD, FAST_HASH), OLD_TIME),
            )
        conn.execute("INSERT INTO roles VALUES (3, 1, 'maintainer')")
        conn.execute("UPDATE files SET uploader_id = 3")
        conn.execute(
            "INSERT INTO tokens (user_id, digest, scope, created) VALUES (3, 'd1', 'read', ?)",
            (OLD_TIME,),
        )
        conn.execute(
            "INSERT INTO allowlist (user_id, cidr, created) VALUES (3, '127.0.0.0/8', ?)",
            (OLD_TIME,),
        )
        conn.execute(
            "INSERT INTO docs VALUES (1, 'b1', 1, 10, ?, 3)",
            (OLD_TIME,),
        )
        conn.execute("DELETE FROM users WHERE id = 4")
        conn.commit()
    finally:
        conn.close()
    return settings


def _rows(settings: Settings, sql: str) -> list[tuple]:
    conn = sqlite3.connect(settings.db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_version_4_data_dir_keeps_every_row_that_points_at_users(v4_dir):
    settings = v4_dir
    schema_before = {
        row[0]: row[1]
        for row in _rows(settings, "SELECT name, sql FROM sqlite_master WHERE tbl_name != 'users'")
    }
    app = create_app(settings)
    assert schema_version(settings) == latest_version()
    assert _rows(settings, "SELECT id, name FROM users ORDER BY id") == [
        (1, "root"),
        (2, "alice"),
        (3, "bob"),
    ]
    assert _rows(settings, "SELECT user_id, role FROM roles ORDER BY user_id") == [
        (2, "owner"),
        (3, "maintainer"),
    ]
    assert _rows(settings, "SELECT uploader_id FROM files") == [(3,)]
    assert _rows(settings, "SELECT user_id FROM tokens") == [(3,)]
    assert _rows(settings, "SELECT user_id FROM allowlist") == [(3,)]
    assert _rows(settings, "SELECT uploader_id FROM docs") == [(3,)]
    assert _rows(settings, "PRAGMA foreign_key_check") == []
    assert _rows(settings, "PRAGMA integrity_check") == [("ok",)]
    # Every other table, index and trigger is as it was; the users table says AUTOINCREMENT
    # and has its triggers again.
    after = dict(_rows(settings, "SELECT name, sql FROM sqlite_master"))
    # Later migrations may add columns to the one-row state table (0007: upstream_serial).
    state_before = schema_before.pop("state")
    assert after["state"].startswith(state_before.removesuffix(")"))
    assert {name: after.get(name) for name in schema_before} == schema_before
    assert "AUTOINCREMENT" in after["users"]
    triggers = {"users_insert_auth", "users_update_auth", "users_delete_auth"}
    assert triggers <= set(after)
    # The app works on it: bob logs in; a new user never gets an id that was handed out.
    client = app.test_client()
    assert client.get("/simple/demo/", headers=basic("bob")).status_code == 200
    db = app.extensions["teamindex"].db
    serials = db.serials()
    # (4 was deleted before the upgrade, which left no trace of it; harmless: the caches
    # keyed on it were in memory, and sessions and docs links of before do not open.)
    newcomer = db.add_user("newcomer", "x", is_admin=False, now=OLD_TIME)
    assert newcomer.id == 4
    assert db.delete_user("newcomer")
    assert db.add_user("another", "x", is_admin=False, now=OLD_TIME).id == 5
    assert db.serials()[1] > serials[1] + 2
    # Foreign keys still act: deleting bob takes his token, role and list entry with him.
    assert db.delete_user("bob")
    assert _rows(settings, "SELECT count(*) FROM tokens") == [(0,)]
    assert _rows(settings, "SELECT count(*) FROM roles") == [(1,)]
    assert _rows(settings, "SELECT uploader_id FROM files") == [(None,)]
