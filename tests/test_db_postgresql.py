"""PostgreSQL as the metadata store (issue 16, step 2), on a real throwaway cluster: one schema
history for both engines, the constraints that stop double uploads, writers serialized with
Busy after the timeout, two servers on one database, and migrate-store both ways."""

from __future__ import annotations

import hashlib
import re
import signal
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import FAST_HASH, USERS, add_token, add_user, basic
from ops_support import add_users, big_wheel, post_upload, start_server, visible_files
from pg_support import Cluster
from uploading import upload

from teamindex.app import create_app
from teamindex.cli import main
from teamindex.clock import utc_now
from teamindex.config import Settings
from teamindex.db import Busy, Conflict, Database
from teamindex.db.engines import migration_scripts
from teamindex.db.transfer import TABLES, table_reports

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    return pg_cluster.fresh_database()


@pytest.fixture
def pg_db(pg_url: str):
    db = Database(pg_url)
    yield db
    db.close()


def pg_settings(tmp_path: Path, url: str, name: str = "data") -> Settings:
    return Settings(data_dir=tmp_path / name, password_hash=FAST_HASH, threads=4, database_url=url)


def make(settings: Settings, *, users: bool = True):
    app = create_app(settings)
    app.config["TESTING"] = True
    if users:
        for name, admin in USERS.items():
            add_user(app, name, admin=admin)
    return app


def schema_of_sqlite(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"
            )
        ]
        return {
            name: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({name})")) for name in names
        }
    finally:
        conn.close()


def schema_of_pg(db: Database) -> dict[str, list[str]]:
    rows = db.conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name != 'schema_version'"
    ).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return {table: sorted(columns) for table, columns in found.items()}


# -- one schema history ----------------------------------------------------------------------


def test_both_engines_have_the_same_migration_numbers():
    sqlite_numbers = [number for number, _ in migration_scripts()]
    pg_numbers = [number for number, _ in migration_scripts("teamindex.migrations.postgresql")]
    assert sqlite_numbers == pg_numbers
    assert len(pg_numbers) >= 8


def test_both_schemas_have_the_same_tables_and_columns(tmp_path, pg_db):
    lite = Database(tmp_path / "s.sqlite3")
    assert lite.migrate() == pg_db.schema_version() == len(migration_scripts())
    lite.close()
    sqlite_schema = schema_of_sqlite(tmp_path / "s.sqlite3")
    assert schema_of_pg(pg_db) == sqlite_schema
    assert set(sqlite_schema) == set(TABLES)  # migrate-store copies every table


def test_migrate_from_scratch_in_several_threads_at_once(pg_cluster):
    url = pg_cluster.empty_database()
    dbs = [Database(url) for _ in range(4)]
    versions: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(dbs))

    def migrate(db: Database) -> None:
        try:
            start.wait(timeout=10)
            versions.append(db.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for db in dbs:
        db.close()
    assert errors == []
    assert versions == [len(migration_scripts())] * len(dbs)


# -- the constraints -------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["alice", "Alice", "ALICE", "aLiCe"])
def test_user_names_are_unique_in_every_spelling(pg_db, spelling):
    pg_db.add_user("alice", "x", is_admin=False, now=utc_now())
    with pytest.raises(Conflict):
        pg_db.add_user(spelling, "x", is_admin=False, now=utc_now())
    found = pg_db.get_user(spelling)
    assert found is not None and found.name == "alice"


def test_the_auth_serial_triggers_hold(pg_db):
    def auth_serial() -> int:
        return pg_db.serials()[1]

    before = auth_serial()
    user = pg_db.add_user("carol", "x", is_admin=False, now=utc_now())
    assert auth_serial() == before + 1
    token_id = pg_db.add_token(
        user.id, "d1", scope="read", projects=[], allow_ips=[], note="", expires=None, now="t"
    )
    assert auth_serial() == before + 2
    pg_db.touch_token(token_id, utc_now(), "127.0.0.1")  # last use: no login forgotten
    assert auth_serial() == before + 2
    assert pg_db.revoke_token(token_id, utc_now())
    assert auth_serial() == before + 3
    serial = pg_db.serial()
    assert pg_db.delete_user("carol")  # and its token, by cascade: both bump it
    assert auth_serial() == before + 5
    assert pg_db.serial() == serial + 1  # deleting a user moves the page serial too


def test_a_nul_character_finds_nothing_and_is_answered_404(tmp_path, pg_url):
    app = make(pg_settings(tmp_path, pg_url))
    client = app.test_client()
    assert client.get("/simple/a%00b/", headers=basic("alice")).status_code == 404
    assert client.get("/files/foo/a%00b.whl", headers=basic("alice")).status_code == 404
    assert client.get("/simple/", headers=basic("al\x00ice")).status_code in {401, 404}
    app.extensions["teamindex"].db.close()


def test_concurrent_uploads_of_one_filename_store_one(tmp_path, pg_url):
    """Two uploads of the same filename with different bytes race: one 200, one refusal,
    and exactly one row (the writers serialize on the advisory lock)."""
    app = make(pg_settings(tmp_path, pg_url))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_wheel(tmp_path / "a", "racer", "1.0", summary="first")
    second = make_wheel(tmp_path / "b", "racer", "1.0", summary="second")
    assert first.name == second.name and first.read_bytes() != second.read_bytes()
    start = threading.Barrier(2)
    statuses: list[int] = []

    def send(path: Path) -> None:
        client = app.test_client()
        start.wait(timeout=10)
        statuses.append(upload(client, path).status_code)

    threads = [threading.Thread(target=send, args=(path,)) for path in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200, 400]
    db = app.extensions["teamindex"].db
    assert [f.filename for f in db.all_files()] == [first.name]
    db.close()


def test_a_writer_waits_for_the_lock_then_gets_busy(pg_url):
    holder = Database(pg_url)
    waiter = Database(pg_url, busy_timeout_ms=300)
    holder.migrate()
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.transaction():
            held.set()
            release.wait(timeout=30)
        holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(timeout=10)
        began = time.monotonic()
        with pytest.raises(Busy):
            waiter.add_user("dave", "x", is_admin=False, now=utc_now())
        waited = time.monotonic() - began
        assert 0.25 <= waited < 5
        assert waiter.get_user("dave") is None  # readers never wait
    finally:
        release.set()
        thread.join(timeout=30)
    assert waiter.add_user("dave", "x", is_admin=False, now=utc_now()).name == "dave"
    waiter.close()


def test_an_upload_during_a_long_write_is_answered_503(tmp_path, pg_url):
    app = make(pg_settings(tmp_path, pg_url))
    other = Database(pg_url)
    wheel = make_wheel(tmp_path, "waiting", "1.0")
    with other.transaction():
        response = upload(app.test_client(), wheel)
    other.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert upload(app.test_client(), wheel).status_code == 200
    app.extensions["teamindex"].db.close()


# -- two servers, one database ---------------------------------------------------------------


def test_two_apps_on_one_database_see_each_others_changes_on_the_next_request(tmp_path, pg_url):
    a = make(pg_settings(tmp_path, pg_url, "a"))
    b = make(pg_settings(tmp_path, pg_url, "b"), users=False)
    a_client, b_client = a.test_client(), b.test_client()
    token_id, secret = add_token(a, "alice", scope="upload")
    token = basic("__token__", secret)
    assert upload(a_client, make_wheel(tmp_path, "shared", "1.0"), "alice").status_code == 200
    page = b_client.get("/simple/shared/", headers={**JSON, **token})
    assert page.status_code == 200
    assert [f["filename"] for f in page.get_json()["files"]] == ["shared-1.0-py3-none-any.whl"]
    # B's cached page follows an upload through A
    assert upload(a_client, make_wheel(tmp_path, "shared", "1.1"), "alice").status_code == 200
    page = b_client.get("/simple/shared/", headers={**JSON, **token})
    assert len(page.get_json()["files"]) == 2
    # a token revoked through A is refused by B on its next request
    assert a.extensions["teamindex"].db.revoke_token(token_id, utc_now())
    assert b_client.get("/simple/shared/", headers=token).status_code == 401
    # a password changed through B is refused by A
    assert b_client.get("/simple/", headers=basic("bob")).status_code == 200
    assert a_client.get("/simple/", headers=basic("bob")).status_code == 200
    b.extensions["teamindex"].db.set_password("bob", "not-a-hash")
    assert a_client.get("/simple/", headers=basic("bob")).status_code == 401
    for app in (a, b):
        app.extensions["teamindex"].db.close()


# -- migrate-store ---------------------------------------------------------------------------


def populated_sqlite_dir(tmp_path: Path) -> tuple[Settings, int]:
    """A SQLite data dir with users, a deleted user (its id must never come back), a
    project with files, a token and audit rows; the highest user id handed out."""
    settings = Settings(data_dir=tmp_path / "lite", password_hash=FAST_HASH)
    app = make(settings)
    add_user(app, "gone")
    db = app.extensions["teamindex"].db
    gone_id = db.get_user("gone").id
    assert db.delete_user("gone")
    client = app.test_client()
    for version in ("1.0", "2.0"):
        (tmp_path / version).mkdir()
        wheel = make_wheel(tmp_path / version, "moving", version)
        assert upload(client, wheel).status_code == 200
    add_token(app, "bob", scope="read", note="kept")
    db.add_allow("10.0.0.0/8", None, "office", utc_now())
    db.close()
    return settings, gone_id


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def test_migrate_store_copies_verifies_and_serves_then_goes_back(
    tmp_path, pg_cluster, capsys, monkeypatch
):
    monkeypatch.delenv("TEAMINDEX_DATABASE_URL", raising=False)
    settings, gone_id = populated_sqlite_dir(tmp_path)
    url = pg_cluster.fresh_database()
    lite = Database(settings.db_path)
    before = table_reports(lite)
    serials = lite.serials()
    lite.close()

    code, out = run_cli(
        capsys, "migrate-store", "--data-dir", str(settings.data_dir), "--database-url", url
    )
    assert code == 0, out
    assert "copied and verified" in out
    pg = Database(url)
    assert table_reports(pg) == before
    assert pg.serials() == serials
    # ids keep going after the highest ever handed out, the deleted user's included
    assert pg.add_user("newcomer", "x", is_admin=False, now=utc_now()).id > gone_id
    assert pg.delete_user("newcomer")
    pg.close()

    # the same data dir served from PostgreSQL: files, tokens and passwords as before
    app = make(replace(settings, database_url=url), users=False)
    client = app.test_client()
    assert client.get("/simple/", headers=basic("alice")).status_code == 403  # the allowlist
    client.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    page = client.get("/simple/moving/", headers={**JSON, **basic("alice")})
    assert page.status_code == 200, page.status
    assert [f["filename"] for f in page.get_json()["files"]] == [
        "moving-1.0-py3-none-any.whl",
        "moving-2.0-py3-none-any.whl",
    ]
    download_name = "moving-2.0-py3-none-any.whl"
    download = client.get(f"/files/moving/{download_name}", headers=basic("bob"))
    assert download.status_code == 200
    assert download.get_data() == (tmp_path / "2.0" / download_name).read_bytes()
    download.close()
    app.extensions["teamindex"].db.close()

    # a second copy into the same, no longer empty, database is refused in one line
    code, out = run_cli(
        capsys, "migrate-store", "--data-dir", str(settings.data_dir), "--database-url", url
    )
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("teamindex: error: the target database is")

    # and back into a fresh SQLite file
    back = tmp_path / "back"
    code, out = run_cli(
        capsys, "migrate-store", "--data-dir", str(back), "--database-url", url, "--reverse"
    )
    assert code == 0, out
    pg = Database(url)
    now_in_pg = table_reports(pg)
    pg.close()
    restored = Database(back / "teamindex.sqlite3")
    assert table_reports(restored) == now_in_pg
    assert restored.add_user("again", "x", is_admin=False, now=utc_now()).id > gone_id + 1
    restored.close()


def test_migrate_store_refuses_without_a_postgresql_url(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TEAMINDEX_DATABASE_URL", raising=False)
    code, out = run_cli(capsys, "migrate-store", "--data-dir", str(tmp_path))
    assert code == 1
    assert "needs --database-url postgresql://" in out


def test_backup_of_a_postgresql_index_is_a_verified_sqlite_copy(tmp_path, pg_url, capsys):
    settings = pg_settings(tmp_path, pg_url)
    app = make(settings)
    assert upload(app.test_client(), make_wheel(tmp_path, "kept", "1.0")).status_code == 200
    db = app.extensions["teamindex"].db
    code, out = run_cli(
        capsys,
        "backup",
        str(tmp_path / "bk"),
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        pg_url,
    )
    assert code == 0, out
    copy = Database(tmp_path / "bk" / "teamindex.sqlite3")
    assert table_reports(copy) == table_reports(db)
    assert [f.filename for f in copy.all_files()] == ["kept-1.0-py3-none-any.whl"]
    copy.close()
    db.close()


def test_forked_workers_share_one_postgresql_database(tmp_path, pg_url, monkeypatch):
    """`serve --workers 2` on PostgreSQL: the parent migrates and closes its pool before the
    fork, each worker opens its own; an upload through one worker is listed by both."""
    monkeypatch.setenv("TEAMINDEX_DATABASE_URL", pg_url)
    data_dir = tmp_path / "data"
    add_users(data_dir)
    assert not (data_dir / "teamindex.sqlite3").exists()
    server = start_server(data_dir, tmp_path / "server.log", threads=4, workers=2)
    try:
        deadline = time.monotonic() + 20
        while server.log_text().count("worker ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.log_text().count("worker ready") == 2
        wheel = big_wheel(tmp_path, "forked", "1.0", 1 << 16)
        assert post_upload(server.url, wheel, "alice")[0] == 200
        served: set[str] = set()
        for _ in range(50):  # new connections until both workers answered
            assert visible_files(server.url) == {
                wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest()
            }
            served = set(re.findall(r"teamindex\.access\[(\d+)\]", server.log_text()))
            if len(served) >= 2:
                break
        assert len(served) >= 2, server.log_text()[-2000:]
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
    assert not (data_dir / "teamindex.sqlite3").exists()  # everything went to PostgreSQL
