"""S3 storage (issue 16 step 3) against a real SeaweedFS: uploads verified before their row,
killed uploads leave no row and `check --repair` takes their orphan object, presigned
redirects that pip and uv follow and that expire, stream mode, outsiders get no URL, docs
in the bucket. Always runs; every test here stores its files in the bucket."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import LiveServer, basic, start_server
from flask import Flask
from ops_support import cli_env
from s3_support import BUCKET, SeaweedS3, register_store
from tools import client as tool
from tools import isolated_env, run, uv
from uploading import stored_files, temp_files, upload
from web_support import docs_zip, seed

from teamindex.config import Settings, load_settings, parse_storage
from teamindex.context import services
from teamindex.index.storage import StorageUnavailable
from teamindex.index.storage.s3 import SHA256_KEY, S3Storage

WHEEL = "foo-1.0-py3-none-any.whl"


@pytest.fixture
def settings(settings: Settings, s3_server: SeaweedS3) -> Settings:
    """The bucket, whatever TEAMINDEX_TEST_STORAGE says; stream unless a test asks."""
    if settings.storage:
        return settings
    return register_store(s3_server.settings(settings, s3_downloads="stream"))


def keys(s3: SeaweedS3, settings: Settings, under: str = "") -> list[str]:
    start = settings.s3_prefix + under
    return [key.removeprefix(start) for key in s3.keys(start)]


def project_status(client, name: str = "foo") -> int:
    return client.get(f"/simple/{name}/", headers=basic("alice")).status_code


# -- uploads -----------------------------------------------------------------------------------


def test_the_object_is_checked_before_its_row_exists(
    client, settings, s3_server, tmp_path, monkeypatch
):
    seen, uploads = [], []
    real_verify, real_put = S3Storage.verify, S3Storage.put_file

    def verify(self, key, size, sha256):
        if "/packages/" in key:
            seen.append((key.rsplit("/", 1)[1], services().db.get_file(WHEEL)))
        return real_verify(self, key, size, sha256)

    def put_file(self, source, key, sha256):
        uploads.append(services().db.conn.in_transaction)
        return real_put(self, source, key, sha256)

    monkeypatch.setattr(S3Storage, "verify", verify)
    monkeypatch.setattr(S3Storage, "put_file", put_file)
    wheel = make_wheel(tmp_path, "foo", "1.0")
    assert upload(client, wheel).status == "200 OK"
    assert seen == [(WHEEL, None), (WHEEL + ".metadata", None)]  # no row yet at either HEAD
    # The uploads ran outside the write transaction (staged); under it, copies in the store.
    assert uploads == [False, False]
    assert [k for k in keys(s3_server, settings) if not k.startswith("packages/")] == []
    head = s3_server.client().head_object(
        Bucket=BUCKET, Key=f"{settings.s3_prefix}packages/foo/{WHEEL}"
    )
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (head["ContentLength"], head["Metadata"][SHA256_KEY]) == (wheel.stat().st_size, sha256)
    assert project_status(client) == 200


def test_a_store_holding_other_bytes_fails_the_upload_and_leaves_nothing(
    client, settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(S3Storage, "verify", lambda self, key, size, sha256: "1 bytes")
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"))
    assert response.status_code == 503
    assert response.status.startswith("503 Storage unavailable: the object store holds other")
    assert stored_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    assert project_status(client) == 404


def test_a_failure_after_the_first_object_removes_it(
    client, settings, s3_server, tmp_path, monkeypatch
):
    """The wheel's object is in place, its .metadata's fails: no row, and no object (final
    or staged) either."""
    real_place = S3Storage._place_staged

    def place(self, staged, size, key):
        if key.endswith(".metadata"):
            raise StorageUnavailable("object store unreachable for the test")
        return real_place(self, staged, size, key)

    monkeypatch.setattr(S3Storage, "_place_staged", place)
    response = upload(client, make_wheel(tmp_path, "foo", "1.0"))
    assert response.status == (
        "503 Storage unavailable: object store unreachable for the test; retry later."
    )
    assert stored_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    assert keys(s3_server, settings) == []
    assert project_status(client) == 404


KILLED_UPLOAD = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from conftest import basic
from uploading import upload
from teamindex.app import create_app
from teamindex.db import Database

# Killed between the object's PUT and the row's COMMIT, as by kill -9.
Database.insert_file = lambda self, new: os._exit(9)
app = create_app()
upload(app.test_client(), Path(sys.argv[2]))
"""


def s3_cli_env(settings: Settings, s3: SeaweedS3) -> dict[str, str]:
    return cli_env(settings.data_dir) | s3.env() | {"TEAMINDEX_STORAGE": settings.storage}


def test_a_killed_upload_leaves_no_row_and_check_repair_takes_its_orphan(
    app, client, settings, s3_server, tmp_path
):
    (tmp_path / "kept").mkdir()
    kept = make_wheel(tmp_path / "kept", "kept", "1.0")
    assert upload(client, kept).status == "200 OK"
    env = s3_cli_env(settings, s3_server)
    wheel = make_wheel(tmp_path, "foo", "1.0")
    tests_dir = str(Path(__file__).parent)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_UPLOAD, tests_dir, str(wheel)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == 9, killed.stderr
    assert project_status(client) == 404  # no row
    orphan = f"packages/foo/{WHEEL}"
    assert orphan in keys(s3_server, settings)

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "teamindex", "check", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    found = check()
    assert found.returncode == 1
    assert f"stray: {orphan}: no row refers to it (written " in found.stdout
    young = check("--repair")  # within the grace period: could be an upload in flight
    assert young.returncode == 1 and orphan in keys(s3_server, settings)
    repaired = check("--repair", "--grace", "0")
    assert f"stray: {orphan}: no row refers to it (quarantined)" in repaired.stdout
    assert repaired.returncode == 0, repaired.stdout
    assert orphan not in keys(s3_server, settings)
    assert f"packages/kept/{kept.name}" in keys(s3_server, settings)  # the row's object stays
    assert check().returncode == 0


# -- downloads ---------------------------------------------------------------------------------


@pytest.fixture
def redirecting(make_app: Callable[..., Flask]) -> Iterator[Callable[..., LiveServer]]:
    """A live server on the bucket with --s3-downloads redirect."""
    running = []

    def start(**changes: object) -> LiveServer:
        app = make_app(s3_downloads="redirect", **changes)
        live, server = start_server(app, app.extensions["teamindex"].settings)
        running.append(server)
        return live

    yield start
    for server in running:
        server.stop()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_pip_and_uv_follow_the_presigned_redirect(redirecting, tmp_path):
    live = redirecting()
    (tmp_path / "dists").mkdir()
    wheel = make_wheel(tmp_path / "dists", "foo", "1.0")
    assert upload(live.app.test_client(), wheel).status == "200 OK"
    status, headers, _body = fetch(f"{live.url}/files/foo/{WHEEL}", basic("alice"))
    assert status == 302 and headers["Cache-Control"] == "private, no-store"
    assert "X-Amz-Signature=" in headers["Location"] and "X-Amz-Expires=300" in headers["Location"]
    env = isolated_env(tmp_path)
    for installer in ("pip", "uv"):
        target = tmp_path / installer
        run([uv(), "venv", "--quiet", target], env=env)
        python = target / "bin" / "python"
        if installer == "pip":
            command = [tool("pip"), "--python", python, "install"]
        else:
            command = [uv(), "pip", "install", "--python", python]
        run([*command, "--index-url", live.index_url(), "foo"], env=env)
        shown = run([python, "-c", "import foo, sys; print(foo.__name__)"], env=env)
        assert shown.stdout.strip() == "foo"


def test_a_presigned_url_serves_the_bytes_then_expires(redirecting, tmp_path):
    live = redirecting(s3_url_expiry=2)
    wheel = make_wheel(tmp_path, "foo", "1.0")
    assert upload(live.app.test_client(), wheel).status == "200 OK"
    status, headers, _ = fetch(f"{live.url}/files/foo/{WHEEL}", basic("alice"))
    assert status == 302
    location = headers["Location"]
    status, headers, body = fetch(location)  # no index credentials: the URL is the right
    assert (status, body) == (200, wheel.read_bytes())
    assert headers["Content-Type"] == "application/octet-stream"
    time.sleep(3.5)
    status, _headers, body = fetch(location)
    assert status == 403 and b"expired" in body


def test_stream_mode_sends_the_bytes_with_file_headers(client, tmp_path):
    wheel = make_wheel(tmp_path, "foo", "1.0", padding=3000)
    data = wheel.read_bytes()
    assert upload(client, wheel).status == "200 OK"
    sha256 = hashlib.sha256(data).hexdigest()
    with client.get(f"/files/foo/{WHEEL}", headers=basic("alice")) as response:
        assert response.status == "200 OK"
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["ETag"] == f'"{sha256}"'
        assert response.headers["Accept-Ranges"] == "bytes"
        assert "Last-Modified" in response.headers and "Location" not in response.headers
        assert response.get_data() == data
    ranged = client.get(f"/files/foo/{WHEEL}", headers={**basic("alice"), "Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.get_data() == data[100:200]
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/files/foo/{WHEEL}", headers={**basic("alice"), "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.get_data() == data[-10:]
    again = client.get(
        f"/files/foo/{WHEEL}", headers={**basic("alice"), "If-None-Match": f'"{sha256}"'}
    )
    assert again.status_code == 304 and again.get_data() == b""


@pytest.mark.parametrize("downloads", ["redirect", "stream"])
def test_outsiders_get_no_url_and_the_same_404(make_app, tmp_path, downloads):
    app = make_app(s3_downloads=downloads)
    client = app.test_client()
    seed(app, client, tmp_path / "dists")  # secret-proj: bob's, alice has no role
    [secret] = [f for f in app.extensions["teamindex"].db.all_files() if f.project == "secret-proj"]
    hidden = client.get(f"/files/secret-proj/{secret.filename}", headers=basic("alice"))
    absent = client.get(
        "/files/secret-proj/secret_proj-9.9-py3-none-any.whl", headers=basic("alice")
    )
    nothing = client.get("/files/no-such/no_such-1.0-py3-none-any.whl", headers=basic("alice"))
    assert hidden.status_code == 404 and "Location" not in hidden.headers
    for other in (absent, nothing):
        assert other.status_code == 404
    assert hidden.get_data() == absent.get_data().replace(b"9.9", secret.version.encode())
    assert "X-Amz" not in hidden.get_data(as_text=True)
    owner = client.get(f"/files/secret-proj/{secret.filename}", headers=basic("bob"))
    assert owner.status_code == (302 if downloads == "redirect" else 200)


# -- docs --------------------------------------------------------------------------------------


def test_docs_live_in_the_bucket(app, client, settings, s3_server, tmp_path):
    seed(app, client, tmp_path / "dists")
    post = {"headers": basic("alice"), "content_type": "application/zip"}
    assert client.post("/docs/team-demo/1.1/", data=docs_zip(), **post).status_code == 200
    (first,) = app.extensions["teamindex"].db.docs_builds(
        app.extensions["teamindex"].db.get_project("team-demo").id
    )
    assert keys(s3_server, settings, "docs/") == [
        f"team-demo/1.1/{first.build}/{name}"
        for name in ("_static/site.css", "_static/site.js", "guide/index.html", "index.html")
    ]
    assert not (settings.data_dir / "docs" / "team-demo").exists()  # nothing on disk
    entry = client.get("/docs/team-demo/1.1/guide/", headers=basic("alice"))
    page = client.get(entry.headers["Location"])
    assert page.status_code == 200 and page.get_data() == b"<h1>Guide</h1>"
    replaced = client.post(
        "/docs/team-demo/1.1/", data=docs_zip({"index.html": "<h1>Second</h1>"}), **post
    )
    assert replaced.status_code == 200
    [(build, name)] = [k.split("/")[2:] for k in keys(s3_server, settings, "docs/")]
    assert build != first.build and name == "index.html"  # the old build's objects are gone
    outsider = client.get("/docs/secret-proj/1.0/", headers=basic("alice"))
    assert outsider.status_code == 404


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        ("local", ""),
        ("s3://bucket", "s3://bucket/"),
        ("s3://bucket/", "s3://bucket/"),
        ("s3://my.bucket/team/index", "s3://my.bucket/team/index/"),
        ("s3://bucket/team/index/", "s3://bucket/team/index/"),
    ],
)
def test_storage_setting(given, expected):
    assert parse_storage(given) == expected


@pytest.mark.parametrize(
    "given", ["s3://", "s3://B", "s3://bucket/../x", "gs://bucket/x", "/data/files", "s3://a"]
)
def test_bad_storage_setting_is_refused(given):
    with pytest.raises(ValueError, match="expected local or s3://bucket/prefix"):
        parse_storage(given)


def test_accel_redirect_with_s3_is_refused_at_start(tmp_path):
    environ = {"TEAMINDEX_STORAGE": "s3://bucket/x", "TEAMINDEX_ACCEL_REDIRECT": "/_protected/"}
    with pytest.raises(ValueError, match="--accel-redirect needs local storage"):
        load_settings(environ=environ)
    env = cli_env(tmp_path / "data") | environ
    result = subprocess.run(
        [sys.executable, "-m", "teamindex", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "teamindex: error: --accel-redirect needs local storage (the front server reads the "
        "data dir); with --storage s3://... downloads redirect to or stream from the bucket"
    ]


# -- backup and restore ------------------------------------------------------------------------


def test_backup_and_restore_round_trip_on_s3(app, client, settings, s3_server, tmp_path):
    seed(app, client, tmp_path / "dists")
    post = {"headers": basic("alice"), "content_type": "application/zip"}
    assert client.post("/docs/team-demo/1.1/", data=docs_zip(), **post).status_code == 200
    env = s3_cli_env(settings, s3_server)

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "teamindex", *args]
        return subprocess.run(
            command, env=env | extra, capture_output=True, text=True, timeout=120, check=False
        )

    dest = tmp_path / "backup"
    made = cli("backup", str(dest))
    assert made.returncode == 0, made.stderr
    records = app.extensions["teamindex"].db.all_files()
    backed_up = sorted(
        str(p.relative_to(dest / "packages")) for p in (dest / "packages").rglob("*") if p.is_file()
    )
    assert backed_up == sorted(stored_files(settings.data_dir))
    assert len(backed_up) == len(records) + sum(r.metadata_sha256 is not None for r in records)
    assert sorted(p.name for p in dest.iterdir()) == ["docs", "packages", "teamindex.sqlite3"]
    assert len(list((dest / "docs").rglob("*.html"))) == 2

    restored_dir = tmp_path / "restored"
    new_storage = f"s3://{BUCKET}/restored-{settings.s3_prefix}"
    back = cli(
        "restore",
        str(dest),
        TEAMINDEX_DATA_DIR=str(restored_dir),
        TEAMINDEX_STORAGE=new_storage,
    )
    assert back.returncode == 0, back.stderr
    old_keys = keys(s3_server, settings)
    new_keys = [
        k.removeprefix(f"restored-{settings.s3_prefix}")
        for k in s3_server.keys(f"restored-{settings.s3_prefix}")
    ]
    assert new_keys == old_keys  # the same packages/ and docs/ objects
    restored = replace(settings, data_dir=restored_dir, storage=new_storage)
    again = make_app_for(restored)
    try:
        record = records[0]
        http = again.test_client()
        got = http.get(f"/files/{record.project}/{record.filename}", headers=basic("bob"))
        assert got.status_code == 200
        assert hashlib.sha256(got.get_data()).hexdigest() == record.sha256
        checked = cli("check", TEAMINDEX_DATA_DIR=str(restored_dir), TEAMINDEX_STORAGE=new_storage)
        assert checked.returncode == 0, checked.stdout
    finally:
        again.extensions["teamindex"].db.close()

    # A damaged file in the backup: the restore refuses it, and leaves no database.
    some = next(p for p in (dest / "packages").rglob("*.whl"))
    data = bytearray(some.read_bytes())
    data[len(data) // 2] ^= 0xFF
    some.write_bytes(bytes(data))
    refused = cli(
        "restore",
        str(dest),
        TEAMINDEX_DATA_DIR=str(tmp_path / "refused"),
        TEAMINDEX_STORAGE=f"s3://{BUCKET}/refused-{settings.s3_prefix}",
    )
    assert refused.returncode == 1
    assert "sha256" in refused.stderr and "the source is damaged" in refused.stderr
    assert not (tmp_path / "refused" / "teamindex.sqlite3").exists()


def make_app_for(settings: Settings) -> Flask:
    from teamindex.app import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app
