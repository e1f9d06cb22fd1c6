"""Install, load, start and stop each server under test.

Every server is reached through a :class:`ServerHandle` (url, pid, stop()).  Each peer
lives in its own virtualenv under ``bench/.venvs/`` so their dependencies never mix.
Servers listen on 127.0.0.1 only, on a port chosen free by the kernel.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
VENVS_DIR = BENCH_DIR / ".venvs"
USER = "alice"

PYPISERVER_SPEC = ("pypiserver[passlib,cache]==2.4.*", "waitress")
DEVPI_SPEC = ("devpi-server==6.20.*",)
PERYX_SPEC = ("peryx",)
TOOLS_SPEC = ("twine", "uv", "poetry")
INSTALL_TIMEOUT = 600
START_TIMEOUT = 120.0


class BenchError(RuntimeError):
    """A benchmark step failed in a way the report should mention."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cmd(
    cmd: Sequence[str | Path],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a timeout; raise :class:`BenchError` with its output on failure."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise BenchError(f"exit {proc.returncode}: {' '.join(args)}\n{tail}")
    return proc


def read_status_kib(pid: int, key: str) -> int | None:
    """Read one ``kB`` field (VmRSS, VmHWM) from /proc/<pid>/status; None if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class ServerHandle:
    """A running server process and the URLs to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    index_url: str
    upload_url: str
    log_path: Path
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        """Process id of the server (the process whose RSS we report)."""
        return self.proc.pid

    def rss_kib(self) -> int | None:
        """Current resident set size (VmRSS) in KiB."""
        return read_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int | None:
        """Peak resident set size since start (VmHWM) in KiB."""
        return read_status_kib(self.pid, "VmHWM")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait for it."""
        stop_process(self.proc, timeout)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, this one process (a server the bench started), and wait."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def spawn(
    cmd: Sequence[str | Path], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process with its output going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(c) for c in cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def log_tail(path: Path, lines: int = 15) -> str:
    """Return the last ``lines`` lines of a log file (empty if missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def basic_auth_header(user: str, password: str) -> str:
    """Return the value of an HTTP Basic ``Authorization`` header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """Open a plain-HTTP connection for ``url``; return it and the request target."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return conn, target


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET request; returns (status, lower-cased headers, body)."""
    conn, target = connect(url, timeout)
    try:
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def wait_for_status(
    url: str,
    headers: dict[str, str],
    proc: subprocess.Popen[bytes],
    timeout: float,
    want: int = 200,
) -> float:
    """Poll ``url`` until it answers ``want``; return the time of that answer (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before answering {url}")
        try:
            status, _, _ = http_get(url, headers, timeout=5.0)
            if status == want:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.01)
    raise BenchError(f"no {want} from {url} within {timeout:.0f}s")


# --------------------------------------------------------------------------- venvs


def ensure_venv(name: str, specs: Sequence[str], marker_extra: str = "") -> Path:
    """Create ``bench/.venvs/<name>`` and pip-install ``specs`` into it (cached by a marker)."""
    venv = VENVS_DIR / name
    marker = venv / ".bench-installed"
    wanted = json.dumps([list(specs), marker_extra])
    if marker.exists() and marker.read_text() == wanted:
        return venv
    if not (venv / "bin" / "python").exists():
        run_cmd([sys.executable, "-m", "venv", venv], timeout=120)
    run_cmd(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", *specs], timeout=INSTALL_TIMEOUT
    )
    marker.write_text(wanted)
    return venv


def pip_version(venv: Path, dist: str) -> str:
    """Installed version of ``dist`` in ``venv`` (or 'unknown')."""
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        return run_cmd([venv / "bin" / "python", "-c", code], timeout=60).stdout.strip()
    except BenchError:
        return "unknown"


def tool_path(name: str) -> Path:
    """Path of a client tool (uv, twine, poetry): PATH first, else the bench tools venv."""
    found = shutil.which(name)
    if found:
        return Path(found)
    venv = ensure_venv("tools", TOOLS_SPEC)
    return venv / "bin" / name


def link_tree(files: Iterable[Path], dest: Path) -> None:
    """Hard-link (or copy, across devices) ``files`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in files:
        target = dest / src.name
        if target.exists():
            continue
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)


# --------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class DistInfo:
    """What a legacy upload form needs to know about one file."""

    name: str
    version: str
    filetype: str
    pyversion: str


def dist_info(path: Path) -> DistInfo:
    """Parse name/version from a (normalized) wheel or sdist filename."""
    fname = path.name
    if fname.endswith(".whl"):
        name, version = fname.split("-")[:2]
        return DistInfo(name.replace("_", "-"), version, "bdist_wheel", "py3")
    stem = fname.removesuffix(".tar.gz")
    name, version = stem.rsplit("-", 1)
    return DistInfo(name.replace("_", "-"), version, "sdist", "source")


def legacy_upload(url: str, headers: dict[str, str], path: Path, timeout: float = 120.0) -> int:
    """POST one file to a legacy ``file_upload`` endpoint; return the HTTP status."""
    info = dist_info(path)
    data = path.read_bytes()
    boundary = "benchboundary" + hashlib.sha256(path.name.encode()).hexdigest()[:24]
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": info.name,
        "version": info.version,
        "filetype": info.filetype,
        "pyversion": info.pyversion,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    chunks: list[bytes] = []
    disposition = "Content-Disposition: form-data; name="
    for key, value in fields.items():
        chunks.append(f'--{boundary}\r\n{disposition}"{key}"\r\n\r\n{value}\r\n'.encode())
    chunks.append(
        f'--{boundary}\r\n{disposition}"content"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    body = b"".join(chunks) + data + f"\r\n--{boundary}--\r\n".encode()
    conn, target = connect(url, timeout)
    try:
        hdrs = dict(headers, **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
        conn.request("POST", target, body=body, headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def upload_many(url: str, headers: dict[str, str], files: Sequence[Path], workers: int = 3) -> None:
    """Upload ``files`` with a few parallel connections; raise on the first failure."""

    def one(path: Path) -> None:
        status = legacy_upload(url, headers, path)
        if status not in (200, 201):
            raise BenchError(f"upload of {path.name} to {url} answered {status}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, files):
            pass


# --------------------------------------------------------------------------- peers


@dataclass
class Peer:
    """Base class: one kind of server under test."""

    key: str
    label: str
    password: str
    notes: list[str] = field(default_factory=list)

    def install(self) -> str:
        """Make sure the server is installed; return its version string."""
        raise NotImplementedError

    def store_cache_key(self) -> str | None:
        """Key under which a loaded store may be reused by later runs (None: never)."""
        return None

    def load(self, main: Sequence[Path], fill: Sequence[Path], store: Path) -> None:
        """Put the corpus into ``store``: ``main`` is served, ``main + fill`` is stored."""
        raise NotImplementedError

    def start(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Spawn the server on ``store`` (does not wait for readiness)."""
        raise NotImplementedError

    def start_cold(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Spawn the server on the cold-start store (main corpus plus filler)."""
        return self.start(store, port, log_path)

    def import_command(self, src: Path, data_dir: Path) -> list[str | Path] | None:
        """The command that bulk-imports the directory ``src`` into a new store at ``data_dir``
        (None: this server has no such command)."""
        return None

    def auth_headers(self) -> dict[str, str]:
        """Headers every read request carries."""
        return {"Authorization": basic_auth_header(USER, self.password)}

    def cold_auth_headers(self, store: Path) -> dict[str, str]:
        """The credentials of the cold start's requests: a CI runner's, a token where the
        server has tokens (peryx's password is one), else the read requests' own."""
        return self.auth_headers()

    def start_ready(
        self, store: Path, log_path: Path, timeout: float = START_TIMEOUT
    ) -> ServerHandle:
        """Start the server and wait until its index root answers 200."""
        handle = self.start(store, free_port(), log_path)
        try:
            wait_for_status(handle.index_url, self.auth_headers(), handle.proc, timeout)
        except BenchError as exc:
            handle.stop()
            raise BenchError(f"{exc}; log tail:\n{log_tail(log_path)}") from exc
        except BaseException:
            handle.stop()
            raise
        return handle


@dataclass
class PypiserverPeer(Peer):
    """pypiserver 2.4 serving a plain directory, with the simple-dir or cached-dir backend."""

    backend: str = "simple-dir"
    extra_args: tuple[str, ...] = ()

    @property
    def venv(self) -> Path:
        """The pypiserver virtualenv."""
        return VENVS_DIR / "pypiserver"

    def install(self) -> str:
        """Install pypiserver (with passlib, watchdog and waitress) into its venv."""
        venv = ensure_venv("pypiserver", PYPISERVER_SPEC)
        waitress = pip_version(venv, "waitress")
        return f"pypiserver {pip_version(venv, 'pypiserver')} (waitress {waitress})"

    def load(self, main: Sequence[Path], fill: Sequence[Path], store: Path) -> None:
        """Hard-link the files into a plain directory (pypiserver's store), add an htpasswd."""
        link_tree(main, store / "packages")
        if fill:
            link_tree([*main, *fill], store / "cold")
        code = (
            "import sys; from passlib.apache import HtpasswdFile as H; "
            "h = H(sys.argv[1], new=True); "
            "h.set_password(sys.argv[2], sys.stdin.readline().strip()); h.save()"
        )
        run_cmd(
            [self.venv / "bin" / "python", "-c", code, store / "htpasswd", USER],
            60,
            stdin=self.password + "\n",
        )

    def start(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Run ``pypi-server run`` with authenticated list/download/update."""
        return self._spawn(store, store / "packages", port, log_path)

    def start_cold(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Start on the larger cold-start directory (main corpus plus filler)."""
        cold = store / "cold"
        return self._spawn(store, cold if cold.exists() else store / "packages", port, log_path)

    def _spawn(self, store: Path, packages: Path, port: int, log_path: Path) -> ServerHandle:
        """Spawn pypi-server on ``packages``."""
        cmd: list[str | Path] = [
            self.venv / "bin" / "pypi-server", "run",
            "--host", "127.0.0.1", "--port", str(port),
            "--authenticate", "update,download,list", "--passwords", store / "htpasswd",
            "--disable-fallback", "--backend", self.backend, *self.extra_args,
            packages,
        ]  # fmt: skip
        proc = spawn(cmd, log_path)
        base = f"http://127.0.0.1:{port}"
        return ServerHandle(self.key, proc, base, f"{base}/simple/", f"{base}/", log_path)


@dataclass
class DevpiPeer(Peer):
    """devpi-server 6.20 with one private stage index ``alice/dev`` (no PyPI mirror)."""

    index: str = "alice/dev"
    fill_index: str = "alice/fill"

    @property
    def venv(self) -> Path:
        """The devpi virtualenv."""
        return VENVS_DIR / "devpi"

    def install(self) -> str:
        """Install devpi-server into its venv."""
        venv = ensure_venv("devpi", DEVPI_SPEC)
        return f"devpi-server {pip_version(venv, 'devpi-server')}"

    def store_cache_key(self) -> str | None:
        """Uploading is slow, so a loaded serverdir is reused per devpi-server version."""
        return f"devpi-{pip_version(self.venv, 'devpi-server')}"

    def load(self, main: Sequence[Path], fill: Sequence[Path], store: Path) -> None:
        """devpi-init, create alice + indexes over HTTP, upload with a login token.

        Uploading with Basic auth makes devpi verify the password hash on every request
        (~0.1 s of CPU each), so the bulk load logs in once and sends the X-Devpi-Auth
        token instead; the measured 500-file upload still uses twine with the password.
        """
        serverdir = store / "server"
        bin_dir = self.venv / "bin"
        run_cmd([bin_dir / "devpi-gen-secret", "--secretfile", store / "secret"], 60)
        run_cmd(
            [
                bin_dir / "devpi-init",
                "--serverdir",
                serverdir,
                "--no-root-pypi",
                "--root-passwd",
                self.password,
            ],
            300,
        )
        handle = self.start(store, free_port(), store / "load.log")
        try:
            wait_for_status(handle.base_url + "/+api", {}, handle.proc, START_TIMEOUT)
            self._create_user_and_indexes(handle.base_url)
            token_headers = self._login(handle.base_url)
            upload_many(f"{handle.base_url}/{self.index}/", token_headers, list(main))
            if fill:
                upload_many(f"{handle.base_url}/{self.fill_index}/", token_headers, list(fill))
        finally:
            handle.stop()

    def _json_request(
        self, method: str, url: str, payload: dict[str, object], headers: dict[str, str]
    ) -> dict[str, object]:
        """Send a JSON request to devpi's HTTP API; raise unless it succeeds."""
        conn, target = connect(url, 60)
        try:
            hdrs = {"Content-Type": "application/json", "Accept": "application/json", **headers}
            conn.request(method, target, body=json.dumps(payload), headers=hdrs)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status not in (200, 201):
            raise BenchError(f"devpi {method} {url} -> {resp.status}: {body[:300]!r}")
        result: dict[str, object] = json.loads(body)
        return result

    def _create_user_and_indexes(self, base: str) -> None:
        """Create user alice and her private indexes (no bases, so no PyPI mirror)."""
        self._json_request(
            "PUT",
            f"{base}/{USER}",
            {"password": self.password, "email": "alice@example.invalid"},
            {},
        )
        auth = self.auth_headers()
        for index in (self.index, self.fill_index):
            self._json_request(
                "PUT", f"{base}/{index}", {"type": "stage", "bases": [], "volatile": True}, auth
            )

    def _login(self, base: str) -> dict[str, str]:
        """Log in once and return the X-Devpi-Auth header for token-authenticated uploads."""
        reply = self._json_request(
            "POST", f"{base}/+login", {"user": USER, "password": self.password}, {}
        )
        token = reply["result"]["password"]  # type: ignore[index]
        value = base64.b64encode(f"{USER}:{token}".encode()).decode()
        return {"X-Devpi-Auth": value}

    def start(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Run devpi-server on the stored serverdir, with PEP 658 metadata enabled."""
        cmd: list[str | Path] = [
            self.venv / "bin" / "devpi-server",
            "--serverdir", store / "server", "--secretfile", store / "secret",
            "--host", "127.0.0.1", "--port", str(port),
            "--enable-core-metadata", "--offline-mode",
        ]  # fmt: skip
        proc = spawn(cmd, log_path)
        base = f"http://127.0.0.1:{port}"
        return ServerHandle(
            self.key, proc, base, f"{base}/{self.index}/+simple/", f"{base}/{self.index}/", log_path
        )


@dataclass
class DataDirPeer(Peer):
    """A server with one data dir per store: ``data`` for the main corpus, ``cold`` for the
    main corpus plus filler (when a filler was loaded)."""

    def start(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Serve the main corpus."""
        return self._spawn(store / "data", port, log_path)

    def start_cold(self, store: Path, port: int, log_path: Path) -> ServerHandle:
        """Serve the cold-start data dir (main corpus plus filler)."""
        cold = store / "cold"
        return self._spawn(cold if cold.exists() else store / "data", port, log_path)

    def _spawn(self, data_dir: Path, port: int, log_path: Path) -> ServerHandle:
        raise NotImplementedError


@dataclass
class TeamindexPeer(DataDirPeer):
    """teamindex from this repository, installed editable into its own venv."""

    threads: int | None = None

    @property
    def venv(self) -> Path:
        """The teamindex virtualenv."""
        return VENVS_DIR / "teamindex"

    def install(self) -> str:
        """``pip install -e`` the repo (re-run when pyproject.toml changes)."""
        pyproject = REPO_DIR / "pyproject.toml"
        if not pyproject.exists():
            raise BenchError(f"{pyproject} does not exist yet: teamindex is not installable")
        digest = hashlib.sha256(pyproject.read_bytes()).hexdigest()
        venv = ensure_venv("teamindex", ("-e", str(REPO_DIR)), marker_extra=digest)
        # pip compiles an installed package's bytecode, as it did for the peers; an editable
        # install is the checkout, which PYTHONDONTWRITEBYTECODE=1 leaves uncompiled: each
        # start of `serve` compiled ~100 modules, ~0.1 s of its cold start (issue 14).
        run_cmd([venv / "bin" / "python", "-m", "compileall", "-q", REPO_DIR / "teamindex"], 300)
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout.strip()  # fmt: skip
        version = pip_version(venv, "teamindex")
        return f"teamindex {version} ({rev or 'no git'}, waitress {pip_version(venv, 'waitress')})"

    def store_cache_key(self) -> str | None:
        """Reuse an imported data dir while teamindex's code and schema are unchanged."""
        digest = hashlib.sha256()
        sources = [REPO_DIR / "pyproject.toml", *sorted((REPO_DIR / "teamindex").rglob("*"))]
        for path in sources:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes())
        return f"teamindex-{digest.hexdigest()[:16]}"

    def _cli(
        self, *args: str | Path, stdin: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m teamindex ARGS``."""
        return run_cmd(
            [self.venv / "bin" / "python", "-m", "teamindex", *args], timeout, stdin=stdin
        )

    def cold_auth_headers(self, store: Path) -> dict[str, str]:
        """A read token of alice's, made in the cold-start data dir (peryx is read with a
        token too): one SHA-256 to verify, where her password costs one scrypt by design."""
        cold = store / "cold"
        data_dir = cold if cold.exists() else store / "data"
        made = self._cli("token", "create", USER, "--note", "cold start", "--data-dir", data_dir)
        found = re.search(r"tix_[A-Za-z0-9_-]+", made.stdout)
        if found is None:
            raise BenchError(f"no token in the output of `token create`: {made.stdout!r}")
        return {"Authorization": basic_auth_header("__token__", found.group(0))}

    def import_command(self, src: Path, data_dir: Path) -> list[str | Path]:
        """``python -m teamindex import --quiet SRC --data DATA``."""
        python = self.venv / "bin" / "python"
        return [python, "-m", "teamindex", "import", "--quiet", src, "--data", data_dir]

    def has_import(self) -> bool:
        """Whether the ``import`` subcommand exists yet."""
        try:
            self._cli("import", "--help", timeout=60)
        except BenchError:
            return False
        return True

    def load(self, main: Sequence[Path], fill: Sequence[Path], store: Path) -> None:
        """Create alice and bulk-import the corpus (or upload it with twine as a fallback).

        The cold-start data dir is a copy of the main one with the filler imported on top,
        which costs a third of importing both from scratch.
        """
        data_dir = store / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._cli(
            "adduser", USER, "--admin", "--password-stdin", "--data", data_dir,
            stdin=self.password + "\n",
        )  # fmt: skip
        self._bulk_load(store, data_dir, main)
        if fill:
            shutil.copytree(data_dir, store / "cold", symlinks=True)
            self._bulk_load(store, store / "cold", fill)

    def _bulk_load(self, store: Path, data_dir: Path, files: Sequence[Path]) -> None:
        """``teamindex import`` ``files`` into ``data_dir`` (HTTP upload if import is missing)."""
        if not self.has_import():
            self.notes.append("teamindex has no `import` command yet: corpus uploaded over HTTP")
            self._upload_over_http(store, data_dir, files)
            return
        src = store / "import-src"
        link_tree(files, src)
        try:
            self._cli("import", "--quiet", src, "--data", data_dir, timeout=3600)
        finally:
            shutil.rmtree(src)

    def _upload_over_http(self, store: Path, data_dir: Path, files: Sequence[Path]) -> None:
        """Fallback loader: start the server and upload every file with parallel POSTs."""
        handle = self._spawn(data_dir, free_port(), store / "load.log")
        try:
            wait_for_status(handle.base_url + "/healthz", {}, handle.proc, START_TIMEOUT)
            upload_many(handle.upload_url, self.auth_headers(), list(files))
        finally:
            handle.stop()

    def _spawn(self, data_dir: Path, port: int, log_path: Path) -> ServerHandle:
        """Spawn ``python -m teamindex serve``."""
        cmd: list[str | Path] = [
            self.venv / "bin" / "python", "-m", "teamindex", "serve",
            "--data", data_dir, "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        proc = spawn(cmd, log_path)
        base = f"http://127.0.0.1:{port}"
        return ServerHandle(self.key, proc, base, f"{base}/simple/", f"{base}/legacy/", log_path)


PERYX_HOSTED_TOML = """\
data_dir = "{data}"
host = "127.0.0.1"
port = {port}

[[index]]
ecosystem = "pypi"
name = "hosted"
hosted = true
anonymous_read = false

[[index.access_token]]
name = "bench"
secret = "{secret}"
actions = ["read", "write"]
"""


@dataclass
class PeryxPeer(DataDirPeer):
    """peryx (async Rust) with one hosted index that only a token may read or write.

    peryx takes the token as the Basic password under any user name, so the benchmark's
    ``alice:<password>`` header is a token login there: a constant-time compare of a
    configured secret, where teamindex verifies a password (cached after the first request).
    """

    @property
    def venv(self) -> Path:
        """bench/.venvs/peryx (shared with the proxy bench)."""
        return VENVS_DIR / "peryx"

    def install(self) -> str:
        """pip install peryx (a prebuilt binary in a wheel)."""
        ensure_venv("peryx", PERYX_SPEC)
        return f"peryx {pip_version(self.venv, 'peryx')}"

    def _config(self, data_dir: Path, port: int) -> Path:
        """Write the hosted-index config for ``data_dir`` listening on ``port``."""
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        config = data_dir.parent / f"{data_dir.name}.toml"
        config.write_text(PERYX_HOSTED_TOML.format(data=data_dir, port=port, secret=self.password))
        return config

    def import_dir(self, files: Sequence[Path], data_dir: Path) -> None:
        """``peryx import-dir hosted DIR`` of ``files`` (hard-linked into a scratch dir)."""
        src = data_dir.parent / f"{data_dir.name}-src"
        link_tree(files, src)
        try:
            run_cmd(self.import_command(src, data_dir), 3600)
        finally:
            shutil.rmtree(src, ignore_errors=True)

    def import_command(self, src: Path, data_dir: Path) -> list[str | Path]:
        """``peryx import-dir -c CONFIG hosted SRC``."""
        config = self._config(data_dir, free_port())
        return [self.venv / "bin" / "peryx", "import-dir", "-c", config, "hosted", src]

    def load(self, main: Sequence[Path], fill: Sequence[Path], store: Path) -> None:
        """Import the main corpus, and main plus filler into the cold-start data dir."""
        self.import_dir(main, store / "data")
        if fill:
            self.import_dir([*main, *fill], store / "cold")

    def _spawn(self, data_dir: Path, port: int, log_path: Path) -> ServerHandle:
        """Spawn ``peryx serve -c`` with warnings only."""
        config = self._config(data_dir, port)
        env = {**os.environ, "NO_COLOR": "1"}
        cmd = [self.venv / "bin" / "peryx", "serve", "-c", config, "--log-level", "warn"]
        proc = spawn(cmd, log_path, env=env)
        base = f"http://127.0.0.1:{port}"
        return ServerHandle(
            self.key, proc, base, f"{base}/hosted/simple/", f"{base}/hosted/", log_path
        )


NGINX_CONF = """
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/octet-stream whl; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        auth_basic "bench";
        auth_basic_user_file {prefix}/htpasswd;
    }}
}}
"""


def nginx_version() -> str | None:
    """Nginx version string, or None when nginx is not installed."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not exe:
        return None
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30, check=False)
    return (out.stderr or out.stdout).strip().replace("nginx version: ", "")


def start_nginx(root: Path, prefix: Path, password: str) -> ServerHandle:
    """Serve ``root`` with nginx (Basic auth, sendfile) as the download ceiling."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    hashed = run_cmd(
        ["openssl", "passwd", "-apr1", "-stdin"], 30, stdin=password + "\n"
    ).stdout.strip()
    (prefix / "htpasswd").write_text(f"{USER}:{hashed}\n")
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, root=root))
    proc = spawn([exe, "-p", prefix, "-c", conf, "-g", "daemon off;"], prefix / "stdout.log")
    base = f"http://127.0.0.1:{port}"
    handle = ServerHandle("nginx", proc, base, f"{base}/", f"{base}/", prefix / "error.log")
    try:
        wait_for_status(f"{base}/", {}, proc, 30, want=401)
    except BaseException:
        handle.stop()
        raise
    return handle


FRONT_WRAPPER = """
user {user};
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/teamindex.conf;
}}
"""


CADDY_FRONT_WRAPPER = """\
{{
\tadmin off
\tauto_https off
\tstorage file_system "{prefix}/storage"
}}
import "{prefix}/teamindex.caddy"
"""


def caddy_version() -> str | None:
    """Caddy's version string, or None when Caddy is not installed."""
    exe = shutil.which("caddy")
    if not exe:
        return None
    out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30, check=False)
    return out.stdout.strip() or None


def start_teamindex_front(
    peer: TeamindexPeer, wheel: Path, run_dir: Path, password: str, front: str = "nginx"
) -> tuple[ServerHandle, ServerHandle]:
    """teamindex (`serve --accel-redirect`) with nginx or Caddy in front, configured by the
    output of `teamindex nginx-config` / `caddy-config` exactly as the README documents:
    (teamindex, the front)."""
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    peer._cli("adduser", USER, "--admin", "--password-stdin", "--data", data_dir, stdin=password)
    peer._cli("import", "--quiet", "--data", data_dir, wheel)
    serve_flags = ["--accel-redirect", "/_protected/", "--trusted-proxy", "127.0.0.1"]
    port, front_port = free_port(), free_port()
    cmd: list[str | Path] = [
        peer.venv / "bin" / "python", "-m", "teamindex", "serve", "--data", data_dir,
        "--host", "127.0.0.1", "--port", str(port), *serve_flags,
    ]  # fmt: skip
    if peer.threads:
        cmd += ["--threads", str(peer.threads)]
    teamindex = ServerHandle(
        "teamindex-front", spawn(cmd, run_dir / "teamindex.log"), "", "", "",
        run_dir / "teamindex.log",
    )  # fmt: skip
    prefix = run_dir / front
    prefix.mkdir(parents=True, exist_ok=True)
    listen = ["--listen", f"127.0.0.1:{front_port}"]
    if front == "caddy":
        printed = peer._cli(
            "caddy-config", "--data", data_dir, "--port", str(port), *serve_flags, *listen
        )
        (prefix / "teamindex.caddy").write_text(printed.stdout)
        (prefix / "Caddyfile").write_text(CADDY_FRONT_WRAPPER.format(prefix=prefix))
        exe = shutil.which("caddy") or "/usr/bin/caddy"
        xdg = {"XDG_CONFIG_HOME": str(prefix / "config"), "XDG_DATA_HOME": str(prefix / "data")}
        proc = spawn(
            [exe, "run", "--config", prefix / "Caddyfile", "--adapter", "caddyfile"],
            prefix / "error.log",
            env={**os.environ, **xdg},
        )
    else:
        printed = peer._cli(
            "nginx-config", "--data", data_dir, "--port", str(port), *serve_flags, *listen,
            "--cache-dir", prefix / "auth-cache",
        )  # fmt: skip
        (prefix / "teamindex.conf").write_text(printed.stdout)
        user = "root" if os.geteuid() == 0 else "nobody"  # the data dir is owner-only
        (prefix / "nginx.conf").write_text(FRONT_WRAPPER.format(prefix=prefix, user=user))
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = spawn(
            [exe, "-p", prefix, "-e", "stderr", "-c", prefix / "nginx.conf", "-g", "daemon off;"],
            prefix / "stdout.log",
        )
    base = f"http://127.0.0.1:{front_port}"
    handle = ServerHandle(f"{front}-front", proc, base, f"{base}/simple/", f"{base}/legacy/",
                          prefix / "error.log")  # fmt: skip
    try:
        wait_for_status(f"{base}/simple/", {}, proc, 30, want=401)
    except BaseException:
        handle.stop()
        teamindex.stop()
        raise
    return teamindex, handle
