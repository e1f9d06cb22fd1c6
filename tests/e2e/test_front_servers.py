"""nginx and Caddy in front, as `teamindex nginx-config` and `teamindex caddy-config` print
them: teamindex checks, the front server sends.

Real nginx and Caddy (Debian packages) run the printed config in front of a real waitress
server with `--accel-redirect /_protected/`; every test runs with each. Flask's own answer
(the same data dir without a front) is the reference: every request shape must get the same
status, headers and body through the front, on the first request (teamindex answers with
X-Accel-Redirect) and on repeats (nginx: its kept decision, no Python request; Caddy keeps
none: one bodiless Python answer per download).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from builders import make_wheel
from conftest import PASSWORD, USERS, LiveServer, add_token, add_user, basic, start_server
from flask import Flask
from flask.testing import FlaskClient
from front_support import (
    FrontServer,
    free_port,
    require_caddy,
    require_nginx,
    start_caddy,
    start_nginx,
)
from ops_support import run_cli
from s3_support import local_disk_only
from tools import client, run, uv
from uploading import OCTET_STREAM, encode_multipart, upload_fields

from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.config import Settings

from .conftest import seed

pytestmark = [
    pytest.mark.e2e,
    local_disk_only("the front sends files from the data dir; S3 refuses --accel-redirect"),
]

FRONTS = ("nginx", "caddy")
WINDOW = 2  # nginx's --cache-seconds for these tests (Caddy keeps no decision)
ACCEL = "/_protected/"
# What a file answer carries; compared between both paths (Date and Server differ).
COMPARED = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "X-Content-Type-Options",
    "Accept-Ranges",
    "WWW-Authenticate",
    "Content-Encoding",
)
PRIVATE_HEADERS = ("x-accel-", "x-teamindex-")
OLD_MTIME = 946_684_800  # 2000-01-01, the wheel's mtime on disk
BETWEEN = "Mon, 01 Jan 2001 00:00:00 GMT"


@dataclass
class Front:
    kind: str  # nginx or caddy
    server: FrontServer
    live: LiveServer
    app: Flask
    reference: FlaskClient  # the same data dir, no front: today's answers
    python_requests: list[str]
    python_peers: list[str]  # REMOTE_ADDR as teamindex saw it (after --trusted-proxy)
    wheel: Path
    private_wheel: Path

    @property
    def window(self) -> int:
        """How long a yes is kept by the front (a revoked credential works that long)."""
        return WINDOW if self.kind == "nginx" else 0

    def get(
        self, path: str, headers: dict[str, str], method: str = "GET", body: bytes | None = None
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def expected(self, path: str, headers: dict[str, str], method: str = "GET") -> Answer:
        response = self.reference.open(path, method=method, headers=headers)
        try:
            return Answer(response.status_code, dict(response.headers), response.get_data())
        finally:
            response.close()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def compared(self) -> tuple[int, dict[str, str], bytes]:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        kept = {n: lowered[n.lower()] for n in COMPARED if n.lower() in lowered}
        if self.status >= 400:  # the error text is teamindex's in both cases
            kept.pop("Content-Length", None)
        return self.status, kept, self.body


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Front]:
    kind = request.param
    require_nginx() if kind == "nginx" else require_caddy()
    fronted = replace(
        settings,
        data_dir=settings.data_dir.parent / "fronted",
        accel_redirect=ACCEL,
        trusted_proxy="127.0.0.1",
    )
    app = create_app(fronted)
    app.config["TESTING"] = True
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, "team-core", "1.0+local.1", padding=50_000)
    private_wheel = make_wheel(wheels, "secret-core", "1.0")
    seed(app, wheel, make_wheel(wheels, "team-app", "1.0", requires_dist=["team-core"]))
    seed(app, private_wheel, user="bob")
    db = app.extensions["teamindex"].db
    db.set_visibility("secret-core", "restricted")
    # A file older on disk than its upload (as a restore or an import may leave it): answers
    # date it by the upload, so the front may not judge If-Modified-Since by the mtime.
    stored = app.extensions["teamindex"].storage.file_path("team-core", wheel.name)
    os.utime(stored, (OLD_MTIME, OLD_MTIME))
    python_requests: list[str] = []
    python_peers: list[str] = []
    inner = app.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        python_requests.append(environ.get("PATH_INFO", ""))
        python_peers.append(environ.get("REMOTE_ADDR", ""))
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    live, running = start_server(app, fronted)
    port = free_port()
    nginx_only = ["--cache-dir", str(tmp_path / "nginx-cache"), "--cache-seconds", str(WINDOW)]
    printed = run_cli(
        fronted.data_dir,
        f"{kind}-config",
        "--port",
        live.url.rsplit(":", 1)[1],
        "--accel-redirect",
        ACCEL,
        "--trusted-proxy",
        "127.0.0.1",
        "--listen",
        f"127.0.0.1:{port}",
        *(nginx_only if kind == "nginx" else []),
    )
    assert printed.returncode == 0, printed.stderr
    assert "note:" not in printed.stderr  # every serve setting it relies on is set
    start = start_nginx if kind == "nginx" else start_caddy
    server = start(tmp_path / kind, printed.stdout, port)
    reference_app = create_app(replace(fronted, accel_redirect=""))
    try:
        yield Front(
            kind,
            server,
            live,
            app,
            reference_app.test_client(),
            python_requests,
            python_peers,
            wheel,
            private_wheel,
        )
    finally:
        server.stop()
        running.stop()
        reference_app.extensions["teamindex"].db.close()
        db.close()


def file_url(wheel: Path, project: str) -> str:
    return f"/files/{project}/{wheel.name}"


def test_the_printed_config_loads_without_complaint(front: Front) -> None:
    """The text the command prints is a valid config, which nginx or Caddy load without a
    warning (Caddy warns about anything `caddy fmt` would change, too)."""
    log = front.server.log_text()
    assert "[emerg]" not in log and "[warn]" not in log
    complaints = [
        line
        for line in log.splitlines()
        if '"level":"warn"' in line or '"level":"error"' in line
        # the test's own wrapper (front_support.caddy_wrapper) turns these off
        if "admin endpoint disabled" not in line and "automatic HTTPS is completely" not in line
    ]
    assert complaints == []


def request_shapes(front: Front) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, headers): every way a client asks for a file."""
    url = file_url(front.wheel, "team-core")
    expected = front.expected(url, basic("alice"))
    etag, modified = expected.headers["ETag"], expected.headers["Last-Modified"]
    alice = basic("alice")
    return [
        ("GET", url, alice),
        ("HEAD", url, alice),
        ("GET", url + ".metadata", alice),
        ("GET", url, {**alice, "Range": "bytes=0-99"}),
        ("GET", url, {**alice, "Range": "bytes=-100"}),
        ("GET", url, {**alice, "Range": "bytes=1000-"}),
        ("GET", url, {**alice, "Range": "bytes=0-99", "If-Range": etag}),
        ("GET", url, {**alice, "Range": "bytes=0-99", "If-Range": '"other"'}),
        ("GET", url, {**alice, "Range": "bytes=0-99", "If-Range": modified}),
        ("GET", url, {**alice, "Range": "bytes=0-99", "If-Range": "Mon, 01 Jan 1990 00:00:00 GMT"}),
        ("GET", url, {**alice, "Range": "bytes=99999999-"}),
        ("GET", url, {**alice, "Range": "bytes=0-1,5-9"}),
        ("GET", url, {**alice, "If-None-Match": etag}),
        ("GET", url, {**alice, "If-None-Match": '"other"'}),
        ("GET", url, {**alice, "If-Modified-Since": modified}),
        ("GET", url, {**alice, "If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"}),
        ("GET", url, {**alice, "If-Modified-Since": BETWEEN}),  # after the mtime, before upload
        ("GET", url, {**alice, "Range": "bytes=0-99", "If-Range": BETWEEN}),
        ("GET", url, {}),
        ("GET", url, basic("alice", "wrong")),
        ("GET", url, basic("nobody")),
        ("GET", "/files/team-core/no_such-1.0-py3-none-any.whl", alice),
        ("GET", f"/files/team-app/{front.wheel.name}", alice),  # the wrong project
        ("GET", file_url(front.private_wheel, "secret-core"), alice),  # restricted: 404
        ("GET", file_url(front.private_wheel, "secret-core"), basic("bob")),  # its owner
        ("GET", file_url(front.private_wheel, "secret-core"), basic("root")),
    ]


def test_both_paths_give_the_same_answers(front: Front) -> None:
    """Through the front — first ask (X-Accel-Redirect), then repeats (nginx's kept
    decision) — each request gets exactly the answer teamindex gives without a front."""
    for method, path, headers in request_shapes(front):
        expected = front.expected(path, headers, method).compared()
        for attempt in range(3):
            answer = front.get(path, headers, method)
            got = answer.compared()
            assert got == expected, f"{method} {path} {headers} {attempt} {got[:2]} {expected[:2]}"
            # teamindex's notes to the front never reach the client
            assert not [h for h in answer.headers if h.lower().startswith(PRIVATE_HEADERS)]


def test_repeat_downloads_cost_no_python_request_behind_nginx(front: Front) -> None:
    """nginx answers repeats from its kept decision; Caddy, which keeps none, asks
    teamindex once per download (and still sends the bytes itself)."""
    url = file_url(front.wheel, "team-core")
    first = front.get(url, basic("alice"))
    assert first.status == 200
    asked = len(front.python_requests)
    for _ in range(20):
        again = front.get(url, basic("alice"))
        assert again.status == 200 and again.body == first.body
    # nginx answered all 20 itself; Caddy asked for each
    assert len(front.python_requests) == asked + (0 if front.kind == "nginx" else 20)
    assert front.wheel.read_bytes() == first.body
    # Another credential is asked about on its own, not served on alice's decision.
    assert front.get(url, basic("bob")).status == 200
    assert len(front.python_requests) > asked


def test_internal_location_is_unreachable_from_outside(front: Front) -> None:
    name = front.wheel.name
    for path in (
        f"{ACCEL}team-core/{name}",
        f"{ACCEL}secret-core/{front.private_wheel.name}",
        f"/_accel/files/team-core/{name}",
        f"/%5Fprotected/team-core/{name}",
        f"/files/../_protected/team-core/{name}",
        f"/files/team-core/..%2F..%2F_protected%2Fteam-core%2F{name}",
    ):
        for headers in ({}, basic("alice"), basic("root")):
            answer = front.get(path, headers)
            assert answer.status in {400, 401, 404}, (path, answer.status)
            assert answer.body != front.wheel.read_bytes()
            assert b"PK" not in answer.body[:2]


def test_restricted_project_is_missing_for_outsiders_through_the_front(front: Front) -> None:
    url = file_url(front.private_wheel, "secret-core")
    for _ in range(2):  # the owner's kept decision is not the outsider's
        assert front.get(url, basic("bob")).status == 200
        answer = front.get(url, basic("alice"))
        assert answer.status == 404
        assert answer.body == front.expected(url, basic("alice")).body


def test_revoked_token_is_refused_within_the_window(front: Front) -> None:
    token_id, secret = add_token(front.app, "alice", scope="read")
    url = file_url(front.wheel, "team-core")
    headers = basic("__token__", secret)
    assert front.get(url, headers).status == 200
    assert front.get(url, headers).status == 200  # kept by nginx now
    front.app.extensions["teamindex"].db.revoke_token(token_id, utc_now())
    deadline = time.monotonic() + front.window + 1.5
    while front.get(url, headers).status == 200:
        assert front.window, "a revoked token still downloads with no kept decision"
        assert time.monotonic() < deadline, "a revoked token still downloads after the window"
        time.sleep(0.2)
    assert front.get(url, headers).status == 401


def test_a_token_limited_to_other_projects_gets_nothing(front: Front) -> None:
    _token_id, secret = add_token(front.app, "alice", scope="read", projects=["team-app"])
    url = file_url(front.wheel, "team-core")
    for _ in range(2):
        assert front.get(url, basic("alice")).status == 200  # alice's own decision kept
        assert front.get(url, basic("__token__", secret)).status == 404


def test_pip_and_uv_install_through_the_front(
    front: Front, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    index_url = f"http://alice:{PASSWORD}@{front.server.url.removeprefix('http://')}/simple/"
    run(
        [client("pip"), "--python", venv_python, "install", "--index-url", index_url, "team-app"],
        env=env,
    )
    run([venv_python, "-c", "import team_app, team_core"], env=env)
    target = tmp_path / "uv-venv"
    run([uv(), "venv", "--quiet", target], env=env)

    def uv_install(url: str, package: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [uv(), "pip", "install", "--python", target / "bin" / "python"]
        return run([*command, "--index-url", url, package], env=env, check=check)

    uv_install(index_url, "team-app")
    run([target / "bin" / "python", "-c", "import team_app, team_core"], env=env)
    # An outsider of the restricted project cannot install it through the front either.
    assert uv_install(index_url, "secret-core", check=False).returncode != 0
    uv_install(index_url.replace("alice", "bob"), "secret-core")


def test_a_forwarded_for_from_the_client_is_not_believed(front: Front) -> None:
    """The front replaces the client's X-Forwarded-For with the address it saw, which
    teamindex believes from --trusted-proxy: allowlists and the audit see the real peer."""
    url = file_url(front.wheel, "team-core")
    spoofed = {**basic("alice"), "X-Forwarded-For": "203.0.113.7"}
    seen = len(front.python_peers)
    assert front.get(url, spoofed).status == 200
    assert front.python_peers[seen:] == ["127.0.0.1"]


def test_an_upload_goes_through_and_downloads_back(front: Front, tmp_path: Path) -> None:
    """twine's POST through the front (under its body size limit), then
    the new file through the front's download path."""
    wheel = make_wheel(tmp_path, "team-new", "2.0", padding=3_000_000)
    data = wheel.read_bytes()
    body, content_type = encode_multipart(upload_fields(data), (wheel.name, data, OCTET_STREAM))
    headers = {**basic("alice"), "Content-Type": content_type}
    answer = front.get("/legacy/", headers, "POST", body)
    assert answer.status == 200, answer.body
    downloaded = front.get(file_url(wheel, "team-new"), basic("alice"))
    assert downloaded.status == 200 and downloaded.body == data
