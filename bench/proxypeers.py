"""Proxy peers (issue 13): the same loopback upstream behind teamindex and three other proxies.

`python bench/proxy.py --peers teamindex,devpi,proxpi,peryx` uses this module. The upstream is
a static PEP 691/503 index on loopback (tests/upstream_support.py's synthetic wheels, served as
JSON or HTML by the Accept header, plus the root `/simple/` list some mirrors read). Each peer
is installed into bench/.venvs/<name> with pip, configured with that upstream as its only
source, and started on a free loopback port. Nothing ever points at a public registry.
"""

from __future__ import annotations

import base64
import html
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import waitress
from flask import Flask, Response, abort, request
from peers import (
    PERYX_SPEC,
    USER,
    VENVS_DIR,
    BenchError,
    basic_auth_header,
    ensure_venv,
    free_port,
    http_get,
    log_tail,
    pip_version,
    run_cmd,
    spawn,
    stop_process,
    wait_for_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from upstream_support import JSON_TYPE, FakeUpstream

PROXPI_SPEC = ("proxpi", "waitress")
DEVPI_SPEC = ("devpi-server==6.20.*",)
START_TIMEOUT = 120.0


# --------------------------------------------------------------------------- upstream


def bulk_up(path: Path, size: int) -> bytes:
    """Add ``size`` random bytes (stored, not deflated) to a wheel so that downloads carry real
    payload; make_wheel's padding compresses to nothing. Returns the new bytes."""
    if size > 0:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("bench_payload.bin", os.urandom(size))
    return path.read_bytes()


def render_html(page: dict[str, Any]) -> str:
    """PEP 503 HTML for a PEP 691 page dict (hash fragment, requires-python, metadata)."""
    links = []
    for entry in page["files"]:
        attrs = [f'href="{html.escape(entry["url"])}#sha256={entry["hashes"]["sha256"]}"']
        if entry.get("requires-python"):
            attrs.append(f'data-requires-python="{html.escape(entry["requires-python"])}"')
        if entry.get("core-metadata"):
            value = f"sha256={entry['core-metadata']['sha256']}"
            attrs.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(entry['filename'])}</a><br/>")
    body = "\n".join(links)
    return f"<!DOCTYPE html><html><body><h1>{page['name']}</h1>\n{body}\n</body></html>\n"


def wants_json(accept: str) -> bool:
    """Whether an Accept header prefers PEP 691 JSON (good enough for the clients here)."""
    return JSON_TYPE in accept and "q=0" not in accept.split(JSON_TYPE, 1)[1].split(",", 1)[0]


def negotiating_app(fake: FakeUpstream) -> Flask:
    """The fake upstream's data, served as JSON or HTML by Accept (mirrors differ in what they
    ask for), with a root project list; files and .metadata come from the fake's own app."""
    inner = fake.app()
    app = Flask("bench-upstream")

    @app.before_request
    def _record() -> None:
        with fake.lock:
            fake.seen.append(request.path)

    @app.get("/simple/")
    def root() -> Response:
        names = sorted(fake.projects)
        if wants_json(request.headers.get("Accept", "")):
            doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
            return Response(json.dumps(doc), content_type=JSON_TYPE)
        links = "\n".join(f'<a href="{n}/">{n}</a>' for n in names)
        return Response(f"<html><body>{links}</body></html>", content_type="text/html")

    @app.get("/simple/<name>/")
    def project(name: str) -> Response:
        if name not in fake.projects:
            abort(404)
        page = fake.page(name)  # with PEP 700's `versions`, which peryx insists on
        if wants_json(request.headers.get("Accept", "")):
            return Response(json.dumps(page), content_type=JSON_TYPE)
        return Response(render_html(page), content_type="text/html; charset=utf-8")

    @app.get("/files/<filename>")
    def download(filename: str) -> Response:
        with inner.test_request_context(f"/files/{filename}"):
            response: Response = inner.view_functions["download"](filename)
            return response

    return app


@dataclass
class ServedUpstream:
    """The negotiating upstream on a loopback port, in a background thread."""

    fake: FakeUpstream
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """Close the listener and wait for the serving thread."""
        self.server.close()
        self.thread.join(10)


def serve_upstream(fake: FakeUpstream) -> ServedUpstream:
    """Start :func:`negotiating_app` with waitress on 127.0.0.1 (8 threads)."""
    server = waitress.create_server(negotiating_app(fake), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.socket.getsockname()[1]}/simple/"
    fake.url = url
    return ServedUpstream(fake, url, server, thread)


# --------------------------------------------------------------------------- peers


@dataclass
class ProxyHandle:
    """A running proxy: where its pages live and what each request must carry."""

    key: str
    proc: subprocess.Popen[bytes]
    simple_url: str  # ends with '/'; + '<name>/' is a project page
    headers: dict[str, str]
    log_path: Path

    def page_url(self, name: str) -> str:
        """The proxy's project page URL for ``name``."""
        return f"{self.simple_url}{name}/"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL, this process only."""
        stop_process(self.proc, timeout)


@dataclass
class ProxyPeer:
    """Base: install once, start against one upstream URL in a fresh work directory."""

    key: str
    notes: list[str] = field(default_factory=list)

    def install(self) -> str:
        """Install into bench/.venvs/<key>; return a version string."""
        raise NotImplementedError

    def start(self, upstream_url: str, work: Path) -> ProxyHandle:
        """Start with an empty cache and wait until it answers."""
        raise NotImplementedError

    def _ready(self, handle: ProxyHandle, url: str, want: int = 200) -> ProxyHandle:
        try:
            wait_for_status(url, handle.headers, handle.proc, START_TIMEOUT, want=want)
        except BaseException as exc:
            handle.stop()
            if isinstance(exc, BenchError):
                raise BenchError(f"{exc}; log tail:\n{log_tail(handle.log_path)}") from exc
            raise
        return handle


@dataclass
class TeamindexProxy(ProxyPeer):
    """teamindex from this checkout (`serve --upstream`), with one hosted project as reference."""

    python: Path = Path("python3")
    password: str = "bench-password-1"
    data_dir: Path | None = None

    def install(self) -> str:
        """Uses the repository's own .venv (the code under test); nothing to install."""
        code = "import importlib.metadata as m; print(m.version('teamindex'))"
        version = run_cmd([self.python, "-c", code], 60).stdout.strip()
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout.strip()  # fmt: skip
        return f"teamindex {version} ({rev})"

    def cli(self, *args: str | Path, stdin: str | None = None) -> None:
        """Run ``python -m teamindex ARGS``."""
        run_cmd([self.python, "-m", "teamindex", *args], 600, stdin=stdin)

    def prepare(self, work: Path, local_wheels: Path) -> None:
        """Create alice and import the hosted reference project (before start)."""
        self.data_dir = work / "data"
        self.data_dir.mkdir(parents=True)
        self.cli("adduser", USER, "--admin", "--password-stdin", "--data", self.data_dir,
                 stdin=self.password + "\n")  # fmt: skip
        self.cli("import", "--quiet", local_wheels, "--data", self.data_dir)

    def start(self, upstream_url: str, work: Path) -> ProxyHandle:
        """Serve with ``--upstream`` pointed at the loopback index."""
        assert self.data_dir is not None, "prepare() first"
        port = free_port()
        log = work / "teamindex.log"
        cmd: list[str | Path] = [
            self.python, "-m", "teamindex", "serve", "--data", self.data_dir,
            "--host", "127.0.0.1", "--port", str(port), "--upstream", upstream_url,
        ]  # fmt: skip
        headers = {"Authorization": basic_auth_header(USER, self.password)}
        handle = ProxyHandle(
            self.key, spawn(cmd, log), f"http://127.0.0.1:{port}/simple/", headers, log
        )
        return self._ready(handle, f"http://127.0.0.1:{port}/healthz")


@dataclass
class DevpiMirror(ProxyPeer):
    """devpi-server 6.20 with a mirror index root/up (`type: mirror`, `mirror_url`)."""

    password: str = "bench-root-pw-1"

    @property
    def venv(self) -> Path:
        """Shared with bench/peers.py's devpi (same spec)."""
        return VENVS_DIR / "devpi"

    def install(self) -> str:
        """pip install devpi-server into bench/.venvs/devpi."""
        ensure_venv("devpi", DEVPI_SPEC)
        return f"devpi-server {pip_version(self.venv, 'devpi-server')}"

    def _json(self, method: str, url: str, payload: dict[str, Any], headers: dict[str, str]) -> Any:
        body = json.dumps(payload).encode()
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            hdrs = {"Content-Type": "application/json", "Accept": "application/json", **headers}
            conn.request(method, parts.path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status not in (200, 201):
            raise BenchError(f"devpi {method} {url} -> {resp.status}: {data[:300]!r}")
        return json.loads(data)

    def start(self, upstream_url: str, work: Path) -> ProxyHandle:
        """devpi-init (no root/pypi), start, create root/up as a mirror of the upstream."""
        bin_dir = self.venv / "bin"
        serverdir = work / "devpi"
        run_cmd([bin_dir / "devpi-gen-secret", "--secretfile", work / "devpi-secret"], 60)
        run_cmd([bin_dir / "devpi-init", "--serverdir", serverdir, "--no-root-pypi",
                 "--root-passwd", self.password], 300)  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = work / "devpi.log"
        cmd: list[str | Path] = [
            bin_dir / "devpi-server", "--serverdir", serverdir,
            "--secretfile", work / "devpi-secret", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        handle = ProxyHandle(self.key, spawn(cmd, log), f"{base}/root/up/+simple/", {}, log)
        self._ready(handle, f"{base}/+api")
        try:
            reply = self._json(
                "POST", f"{base}/+login", {"user": "root", "password": self.password}, {}
            )
            token = reply["result"]["password"]
            auth = {"X-Devpi-Auth": base64.b64encode(f"root:{token}".encode()).decode()}
            self._json(
                "PUT", f"{base}/root/up", {"type": "mirror", "mirror_url": upstream_url}, auth
            )
        except BaseException:
            handle.stop()
            raise
        return handle


@dataclass
class ProxpiPeer(ProxyPeer):
    """proxpi (a Flask app) under waitress, PROXPI_INDEX_URL at the loopback upstream."""

    threads: int = 8

    @property
    def venv(self) -> Path:
        """bench/.venvs/proxpi."""
        return VENVS_DIR / "proxpi"

    def install(self) -> str:
        """pip install proxpi and waitress."""
        ensure_venv("proxpi", PROXPI_SPEC)
        return f"proxpi {pip_version(self.venv, 'proxpi')} (waitress, {self.threads} threads)"

    def start(self, upstream_url: str, work: Path) -> ProxyHandle:
        """``waitress-serve proxpi.server:app`` with only the loopback index configured."""
        port = free_port()
        log = work / "proxpi.log"
        cache = work / "proxpi-cache"
        cache.mkdir()
        env = {
            **os.environ,
            "PROXPI_INDEX_URL": upstream_url,
            "PROXPI_EXTRA_INDEX_URLS": "",
            "PROXPI_CACHE_DIR": str(cache),
            "PROXPI_LOGGING_LEVEL": "WARNING",
        }
        cmd: list[str | Path] = [
            self.venv / "bin" / "python", "-m", "waitress", "--host", "127.0.0.1",
            "--port", str(port), f"--threads={self.threads}", "proxpi.server:app",
        ]  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        handle = ProxyHandle(self.key, spawn(cmd, log, env=env), f"{base}/index/", {}, log)
        return self._ready(handle, f"{base}/health")


PERYX_TOML = """\
data_dir = "{data}"
host = "127.0.0.1"
port = {port}

[[index]]
ecosystem = "pypi"
name = "up"
anonymous_read = false

[[index.access_token]]
name = "bench"
secret = "{secret}"
actions = ["read"]

[[index.upstream]]
name = "primary"
url = "{upstream}"
"""


@dataclass
class PeryxPeer(ProxyPeer):
    """peryx with one cached PyPI-ecosystem index whose only upstream is the loopback index,
    read with HTTP Basic auth (a read token, anonymous read off) as teamindex is: of the
    peers, only peryx authenticates reads (devpi-server 6.20 has no read ACL, proxpi no auth).
    """

    secret: str = "bench-peryx-read-token-1"

    @property
    def venv(self) -> Path:
        """bench/.venvs/peryx."""
        return VENVS_DIR / "peryx"

    def install(self) -> str:
        """pip install peryx (a prebuilt binary in a wheel)."""
        ensure_venv("peryx", PERYX_SPEC)
        return f"peryx {pip_version(self.venv, 'peryx')}"

    def start(self, upstream_url: str, work: Path) -> ProxyHandle:
        """Write peryx.toml (replacing its default indexes), ``peryx serve -c``."""
        port = free_port()
        config = work / "peryx.toml"
        config.write_text(
            PERYX_TOML.format(
                data=work / "peryx-data", port=port, upstream=upstream_url, secret=self.secret
            )
        )
        exe = self.venv / "bin" / "peryx"
        run_cmd([exe, "config", "check", "-c", config], 60)
        log = work / "peryx.log"
        env = {**os.environ, "NO_COLOR": "1"}
        proc = spawn([exe, "serve", "-c", config, "--log-level", "warn"], log, env=env)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": basic_auth_header("bench", self.secret)}
        handle = ProxyHandle(self.key, proc, f"{base}/up/simple/", headers, log)
        return self._ready(handle, f"{base}/up/simple/")


# --------------------------------------------------------------------------- parsing

_HREF = re.compile(r'href="([^"]+)"')


def first_file_url(page_url: str, content_type: str, body: bytes) -> str:
    """Absolute URL (no fragment) of the first file on a PEP 691 JSON or PEP 503 HTML page."""
    if "json" in content_type:
        href = json.loads(body)["files"][0]["url"]
    else:
        match = _HREF.search(body.decode())
        if not match:
            raise BenchError(f"no file link on {page_url}")
        href = html.unescape(match.group(1))
    return urllib.parse.urljoin(page_url, href).split("#", 1)[0]


def fetch_ok(url: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """GET that must answer 200 (a proxy that redirects or fails is reported, not timed)."""
    status, hdrs, body = http_get(url, headers, timeout=60)
    if status != 200:
        raise BenchError(f"GET {url} answered {status}: {body[:200]!r}")
    return hdrs, body
