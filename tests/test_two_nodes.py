"""Two teamindex nodes, one PostgreSQL database and one bucket: what issue 16 promises a
team that runs the index on several machines. Real processes (`python -m teamindex serve`
on free loopback ports), the session's PostgreSQL cluster (pg_support) and SeaweedFS
(s3_support), each test on a fresh database and a fresh key prefix.

A change made through node A is seen by node B on its very next request: B's login cache
and page cache follow the serials in the shared database. A node killed with -9 in the
middle of uploads leaves nothing listed without its object, and `check --repair` takes
what it left in the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import FAST_HASH, PASSWORD
from ops_support import (
    JSON,
    ServerProcess,
    auth_header,
    big_wheel,
    cli_env,
    get,
    listed_files,
    post_upload,
    start_half_upload,
    start_server,
)
from pg_support import Cluster
from s3_support import BUCKET, SeaweedS3
from tools import client as tool
from tools import isolated_env, run, uv

from teamindex.access.auth import hash_password, new_token_secret, token_digest
from teamindex.clock import utc_now
from teamindex.db import Database

STOP_SECONDS = 10.0


@dataclass
class SharedStore:
    """One database and one bucket prefix; env() is a node's settings for them."""

    database_url: str
    storage: str
    prefix: str
    s3: SeaweedS3

    def env(self) -> dict[str, str]:
        return self.s3.env() | {
            "TEAMINDEX_DATABASE_URL": self.database_url,
            "TEAMINDEX_STORAGE": self.storage,
        }

    def stored_keys(self) -> list[str]:
        return [key.removeprefix(self.prefix) for key in self.s3.keys(self.prefix)]


@pytest.fixture
def shared(pg_cluster: Cluster, s3_server: SeaweedS3) -> SharedStore:
    url = pg_cluster.fresh_database()
    db = Database(url)
    try:
        for name, admin in (("alice", False), ("root", True)):
            db.add_user(name, hash_password(PASSWORD, FAST_HASH), is_admin=admin, now=utc_now())
    finally:
        db.close()
    prefix = f"two-nodes-{uuid.uuid4().hex[:12]}/"
    return SharedStore(url, f"s3://{BUCKET}/{prefix}", prefix, s3_server)


@pytest.fixture
def nodes(shared: SharedStore, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start(name, workers=1): a node with its own data dir (its tmp/, its logs) on the
    shared database and bucket, in a process group of its own; all killed in teardown."""
    started: list[ServerProcess] = []

    def start(name: str, *, workers: int = 1) -> ServerProcess:
        data_dir = tmp_path / name
        data_dir.mkdir()
        server = start_server(
            data_dir,
            tmp_path / f"{name}.log",
            threads=8,
            workers=workers,
            extra_env=shared.env(),
            new_session=True,
            timeout=60.0,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(STOP_SECONDS)


def data_dir_of(server: ServerProcess) -> Path:
    return server.log.with_suffix("")


def node_cli(shared: SharedStore, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`teamindex ARGS` on the shared database and bucket (the node's data dir)."""
    return subprocess.run(
        [sys.executable, "-m", "teamindex", *args],
        env=cli_env(data_dir) | shared.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fetch_file(url: str, project: str, filename: str) -> bytes | None:
    """A download through a node, following its redirect to the bucket (without the
    index's credentials, as pip does for another host); None if it is refused."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(
        f"{url}/files/{project}/{filename}", headers={"Authorization": auth_header("alice")}
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code not in (302, 303, 307):
            return None
        location = error.headers["Location"]
    with urllib.request.urlopen(location, timeout=30) as response:
        return response.read()


def listed(url: str, project: str, user: str = "alice", password: str = PASSWORD) -> list[str]:
    status, body = get(url, f"/simple/{project}/", user, password=password, accept=JSON)
    assert status == 200, (status, body[:200])
    return [entry["filename"] for entry in json.loads(body)["files"]]


# -- upload on A, install through B ------------------------------------------------------------


def test_upload_through_a_then_pip_and_uv_install_through_b_at_once(shared, nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    dists = tmp_path / "dists"
    dists.mkdir()
    wheel = make_wheel(dists, "two-nodes-demo", "1.0", padding=200_000)
    env = isolated_env(tmp_path)
    run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            f"{a.url}/legacy/",
            "-u",
            "alice",
            "-p",
            PASSWORD,
            wheel,
        ],
        env=env,
    )
    assert listed(b.url, "two-nodes-demo") == [wheel.name]
    assert fetch_file(b.url, "two-nodes-demo", wheel.name) == wheel.read_bytes()

    index = b.url.replace("http://", f"http://alice:{PASSWORD}@") + "/simple/"
    pythons = {}
    for installer in ("pip", "uv"):
        run([uv(), "venv", "--quiet", tmp_path / installer], env=env)
        pythons[installer] = tmp_path / installer / "bin" / "python"
    commands = {
        "pip": [tool("pip"), "--python", pythons["pip"], "install"],
        "uv": [uv(), "pip", "install", "--python", pythons["uv"]],
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    start = threading.Barrier(2, timeout=30)

    def install(installer: str) -> None:
        start.wait()
        results[installer] = run(
            [*commands[installer], "--index-url", index, "two-nodes-demo"], env=env, check=False
        )

    threads = [threading.Thread(target=install, args=(name,)) for name in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert {name: result.returncode for name, result in results.items()} == {"pip": 0, "uv": 0}
    for installer, python in pythons.items():
        # Both check the sha256 the page gave; the installed module is the uploaded one.
        shown = run(
            [python, "-c", "import two_nodes_demo; print(two_nodes_demo.__name__)"], env=env
        )
        assert shown.stdout.strip() == "two_nodes_demo", installer
        record = next((python.parent.parent / "lib").glob("python*/site-packages/*.dist-info"))
        assert record.name == "two_nodes_demo-1.0.dist-info", installer


# -- changes on A seen by B's next request -----------------------------------------------------


def test_a_token_revoked_on_a_is_refused_by_b_on_its_next_request(shared, nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    secret = new_token_secret()
    db = Database(shared.database_url)
    try:
        token_id = db.add_token(
            db.get_user("alice").id,
            token_digest(secret),
            scope="read",
            projects=[],
            allow_ips=[],
            note="two nodes",
            expires=None,
            now=utc_now(),
        )
    finally:
        db.close()
    for _ in range(3):  # B accepts it (and keeps the login in its cache)
        assert get(b.url, "/simple/", "__token__", password=secret)[0] == 200
    assert get(a.url, "/simple/", "__token__", password=secret)[0] == 200
    revoked = node_cli(shared, data_dir_of(a), "token", "revoke", str(token_id))
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert get(b.url, "/simple/", "__token__", password=secret)[0] == 401
    assert get(a.url, "/simple/", "__token__", password=secret)[0] == 401
    assert get(b.url, "/simple/")[0] == 200  # alice's password still works on B


def test_a_page_cached_on_b_shows_an_upload_made_on_a(shared, nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    first = make_wheel(tmp_path, "cached-page", "1.0")
    assert post_upload(a.url, first, "alice")[0] == 200
    for _ in range(3):  # B renders the page once and answers from its cache after
        assert listed(b.url, "cached-page") == [first.name]
    status, body = get(b.url, "/simple/")
    assert status == 200 and b"cached-page" in body
    second = make_wheel(tmp_path, "cached-page", "1.1")
    assert post_upload(a.url, second, "alice")[0] == 200
    assert listed(b.url, "cached-page") == [first.name, second.name]
    third = make_wheel(tmp_path, "new-project", "0.1")
    assert post_upload(a.url, third, "alice")[0] == 200
    status, body = get(b.url, "/simple/")
    assert status == 200 and b"new-project" in body


# -- kill -9 of node A during uploads ----------------------------------------------------------

UPLOADS = 20
HALF_SENT = 4  # of them: bodies half sent when A dies (in flight whatever the timing)
WHEEL_SIZE = 1_500_000
OK_BEFORE_KILL = 5


def test_kill_9_of_a_during_20_uploads_loses_nothing_that_got_200(shared, nodes, tmp_path):
    a, b = nodes("a", workers=2), nodes("b")
    dists = tmp_path / "dists"
    dists.mkdir()
    wheels = [big_wheel(dists, f"killed-{n % 5}", f"1.{n}", WHEEL_SIZE) for n in range(UPLOADS)]
    sha256 = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    halves = [start_half_upload(a.url, wheel) for wheel in wheels[:HALF_SENT]]
    statuses: dict[str, int | str] = {}
    enough_200 = threading.Event()  # A dies once a few uploads got their 200

    def send(wheel: Path) -> None:
        try:
            statuses[wheel.name] = post_upload(a.url, wheel, "alice", timeout=60)[0]
        except OSError as exc:  # the server died under it
            statuses[wheel.name] = type(exc).__name__
        if sum(status == 200 for status in statuses.values()) >= OK_BEFORE_KILL:
            enough_200.set()

    threads = [threading.Thread(target=send, args=(w,)) for w in wheels[HALF_SENT:]]
    for thread in threads:
        thread.start()
    assert enough_200.wait(timeout=120), statuses
    os.killpg(a.process.pid, signal.SIGKILL)  # the parent and its workers
    a.process.wait(STOP_SECONDS)
    for thread in threads:
        thread.join(timeout=90)
    for half, wheel in zip(halves, wheels, strict=False):
        try:
            statuses[wheel.name] = half.finish()
        except OSError as exc:
            statuses[wheel.name] = type(exc).__name__
    assert len(statuses) == UPLOADS
    ok = {name for name, status in statuses.items() if status == 200}
    assert ok and len(ok) < UPLOADS, statuses  # the kill came in the middle

    # Every 200 is listed on B with its sha256 and downloads; nothing listed lacks its object.
    on_b = listed_files(b.url)
    assert ok <= set(on_b), statuses
    for filename, (project, listed_sha256) in on_b.items():
        assert listed_sha256 == sha256[filename], filename
        data = fetch_file(b.url, project, filename)
        assert data is not None and hashlib.sha256(data).hexdigest() == sha256[filename]

    # check sees at most what the killed uploads left: objects without a row, open
    # multipart uploads, A's temp files; --repair (no grace) takes them all.
    killed_files = {name for name in sha256 if name not in on_b}
    found = node_cli(shared, data_dir_of(a), "check")
    print(statuses, found.stdout, sep="\n")  # shown when the test fails
    for line in found.stdout.splitlines():
        if line.startswith(("checked ", "quarantined ")):
            continue
        kind, path, _detail = line.split(": ", 2)
        assert kind in {"stray", "upload", "temp"}, line
        if kind == "stray":  # an object placed, its row never committed
            assert Path(path).name.removesuffix(".metadata") in killed_files, line
        else:  # staged in the bucket's incoming/, or a temp file in A's tmp/
            staged = path.startswith("incoming/")
            assert staged or Path(path).parent == data_dir_of(a) / "tmp", line
    repaired = node_cli(shared, data_dir_of(a), "check", "--repair", "--grace", "0")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    clean = node_cli(shared, data_dir_of(a), "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1].startswith("checked ")
    assert all(
        not line.startswith(("stray", "upload", "temp")) for line in clean.stdout.splitlines()
    )
    stored = {key.removeprefix("packages/") for key in shared.stored_keys()}
    assert {f"{project}/{name}" for name, (project, _) in on_b.items()} <= stored
    assert not any(Path(key).name in killed_files for key in stored)
