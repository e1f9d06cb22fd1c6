"""`teamindex migrate-store --storage s3://...`: a data dir's files, .metadata and docs go
into the bucket object by object (verified against the rows) before the rows go into
PostgreSQL, and `--reverse` brings both back into a fresh data dir. Real servers: the
session's PostgreSQL cluster and SeaweedFS (pg_support, s3_support)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import FAST_HASH, USERS, add_user, basic
from pg_support import Cluster
from s3_support import BUCKET, SeaweedS3
from uploading import upload
from web_support import docs_zip

from teamindex.app import create_app
from teamindex.cli import main
from teamindex.config import Settings
from teamindex.db import Database
from teamindex.db.transfer import table_reports


@pytest.fixture
def bucket_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The CLI finds the endpoint and keys in boto3's own variables; no other store."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("TEAMINDEX_DATABASE_URL", "TEAMINDEX_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    return s3_server


def fresh_storage() -> tuple[str, str]:
    """(--storage value, its key prefix) under a prefix no other test uses."""
    prefix = f"migrate-{uuid.uuid4().hex[:12]}/"
    return f"s3://{BUCKET}/{prefix}", prefix


def populated_data_dir(tmp_path: Path) -> Settings:
    """A SQLite data dir filled through the upload routes: wheels (with .metadata), an
    sdist, and a docs build."""
    settings = Settings(data_dir=tmp_path / "lite", password_hash=FAST_HASH)
    app = create_app(settings)
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    client = app.test_client()
    dists = tmp_path / "dists"
    dists.mkdir()
    for path in (
        make_wheel(dists, "moving", "1.0"),
        make_wheel(dists, "moving", "2.0", padding=300_000),
        make_sdist(dists, "moving", "2.0"),
        make_wheel(dists, "other-thing", "0.1"),
    ):
        assert upload(client, path).status_code == 200, path
    posted = client.post(
        "/docs/moving/2.0/",
        data=docs_zip(),
        headers=basic("alice"),
        content_type="application/zip",
    )
    assert posted.status_code == 200
    app.extensions["teamindex"].db.close()
    return settings


def files_under(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["migrate-store", *args])
    out, err = capsys.readouterr()
    return code, out + err


def test_migrate_store_with_s3_both_ways(tmp_path, pg_cluster: Cluster, bucket_env, capsys):
    lite = populated_data_dir(tmp_path)
    packages = files_under(lite.packages_dir)
    docs = files_under(lite.data_dir / "docs")
    assert any(name.endswith(".metadata") for name in packages) and len(docs) == 4
    url = pg_cluster.fresh_database()
    storage, prefix = fresh_storage()
    source = Database(lite.db_path)
    before = table_reports(source)
    source.close()

    code, out = migrate(
        capsys, "--data-dir", str(lite.data_dir), "--database-url", url, "--storage", storage
    )
    assert code == 0, out
    assert "files: 4 (" in out and "docs: 1 builds (4 files), verified" in out
    in_bucket = {
        key.removeprefix(prefix + "packages/") for key in bucket_env.keys(prefix + "packages/")
    }
    assert in_bucket == set(packages)
    assert len(bucket_env.keys(prefix + "docs/")) == 4
    pg = Database(url)
    assert table_reports(pg) == before
    pg.close()

    # served from PostgreSQL + S3 by a node with an empty data dir: every file byte-identical
    served = bucket_env.settings(
        Settings(data_dir=tmp_path / "node", password_hash=FAST_HASH, database_url=url),
        prefix=prefix.rstrip("/"),
        s3_downloads="stream",
    )
    app = create_app(served)
    client = app.test_client()
    for name, data in packages.items():
        got = client.get(f"/files/{name}", headers=basic("bob"))
        assert got.status_code == 200, name
        assert got.get_data() == data, name
        got.close()
    guide = client.get("/docs/moving/2.0/guide/", headers=basic("bob"))
    if guide.status_code in (301, 302, 303, 307, 308):  # docs may redirect to the bucket
        guide = client.get(guide.headers["Location"])
    assert guide.status_code == 200 and guide.get_data() == b"<h1>Guide</h1>"
    app.extensions["teamindex"].db.close()
    pg = Database(url)
    served_rows = table_reports(pg)  # the node's logins added rows (known addresses)
    pg.close()

    # back into a fresh data dir: the same files, docs and rows, and `check` finds it clean
    back = tmp_path / "back"
    code, out = migrate(
        capsys,
        "--data-dir",
        str(back),
        "--database-url",
        url,
        "--storage",
        storage,
        "--reverse",
    )
    assert code == 0, out
    assert files_under(back / "packages") == packages
    assert files_under(back / "docs") == docs
    restored = Database(back / "teamindex.sqlite3")
    assert table_reports(restored) == served_rows
    restored.close()
    assert main(["check", "--data-dir", str(back)]) == 0, capsys.readouterr()


def test_a_target_storage_holding_files_is_refused_before_anything_moves(
    tmp_path, pg_cluster: Cluster, bucket_env, capsys
):
    lite = populated_data_dir(tmp_path)
    storage, prefix = fresh_storage()
    bucket_env.client().put_object(Bucket=BUCKET, Key=prefix + "packages/x/left-over", Body=b"x")
    url = pg_cluster.fresh_database()
    code, out = migrate(
        capsys, "--data-dir", str(lite.data_dir), "--database-url", url, "--storage", storage
    )
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last == (
        f"teamindex: error: the target storage {storage} already holds files; "
        "migrate-store copies into an empty one only"
    )
    assert bucket_env.keys(prefix) == [prefix + "packages/x/left-over"]
    pg = Database(url)
    assert all(report.rows == 0 for report in table_reports(pg) if report.table != "state")
    pg.close()


def test_a_target_database_holding_rows_is_refused_before_any_file_moves(
    tmp_path, pg_cluster: Cluster, bucket_env, capsys
):
    lite = populated_data_dir(tmp_path)
    url = pg_cluster.fresh_database()
    first, _ = fresh_storage()
    args = ("--data-dir", str(lite.data_dir), "--database-url", url)
    assert migrate(capsys, *args, "--storage", first)[0] == 0
    storage, prefix = fresh_storage()
    code, out = migrate(capsys, *args, "--storage", storage)
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("teamindex: error: the target database is")
    assert bucket_env.keys(prefix) == []


def test_a_damaged_source_file_stops_the_copy_and_leaves_both_targets_empty(
    tmp_path, pg_cluster: Cluster, bucket_env, capsys
):
    lite = populated_data_dir(tmp_path)
    damaged = lite.packages_dir / "moving" / "moving-2.0-py3-none-any.whl"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    damaged.write_bytes(bytes(data))
    url = pg_cluster.fresh_database()
    storage, prefix = fresh_storage()
    code, out = migrate(
        capsys, "--data-dir", str(lite.data_dir), "--database-url", url, "--storage", storage
    )
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("teamindex: error: ") and "the source is damaged" in last
    assert "moving-2.0-py3-none-any.whl" in last
    assert bucket_env.keys(prefix) == []  # what was copied before is taken back
    pg = Database(url)
    assert all(report.rows == 0 for report in table_reports(pg) if report.table != "state")
    pg.close()
