"""Helpers for the operations tests: raw HTTP uploads and downloads (http.client, so many
threads can hit a real server), incompressible wheels, and `python -m teamindex serve` as a
real subprocess on a free port."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from builders import _record_line, dist_name, metadata_text
from conftest import FAST_HASH, PASSWORD

from teamindex.access.auth import hash_password
from teamindex.clock import utc_now
from teamindex.db import Database

JSON = "application/vnd.pypi.simple.v1+json"
SERVE_LINE = re.compile(r"serving (http://[^/\s]+)/simple/")


def auth_header(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def post_upload(
    url: str, path: Path, user: str, *, password: str = PASSWORD, timeout: float = 60.0
) -> tuple[int, str]:
    """Upload like twine (multipart, sha256 digest); returns (status, reason)."""
    data = path.read_bytes()
    boundary = uuid.uuid4().hex
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = _connection(url, timeout)
    try:
        conn.putrequest("POST", "/legacy/")
        conn.putheader("Authorization", auth_header(user, password))
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
        conn.endheaders()
        conn.send(head)
        view = memoryview(data)
        for start in range(0, len(data), 1 << 20):
            conn.send(view[start : start + (1 << 20)])
        conn.send(tail)
        response = conn.getresponse()
        response.read()
        return response.status, response.reason
    finally:
        conn.close()


@dataclass
class HalfUpload:
    """An upload whose multipart body is half sent (a graceful-stop test signals the server
    in between); finish() sends the rest and returns the status."""

    conn: http.client.HTTPConnection
    rest: bytes

    def finish(self) -> int:
        self.conn.send(self.rest)
        response = self.conn.getresponse()
        response.read()
        self.conn.close()
        return response.status


def start_half_upload(url: str, wheel: Path, user: str = "alice") -> HalfUpload:
    """POST /legacy/ like twine with half of `wheel`'s body sent."""
    data = wheel.read_bytes()
    boundary = "sigtermboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="sha256_digest"\r\n\r\n'
        f"{hashlib.sha256(data).hexdigest()}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{wheel.name}"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = _connection(url, timeout=20)
    conn.putrequest("POST", "/legacy/")
    conn.putheader("Authorization", auth_header(user))
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
    conn.endheaders()
    conn.send(head + data[: len(data) // 2])
    return HalfUpload(conn, data[len(data) // 2 :] + tail)


def get(
    url: str,
    path: str,
    user: str = "alice",
    *,
    password: str = PASSWORD,
    accept: str | None = None,
) -> tuple[int, bytes]:
    conn = _connection(url, 30.0)
    try:
        headers = {"Authorization": auth_header(user, password)}
        if accept:
            headers["Accept"] = accept
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def listed_files(url: str) -> dict[str, tuple[str, str]]:
    """filename -> (project, sha256) of every file the simple API lists."""
    status, body = get(url, "/simple/", accept=JSON)
    assert status == 200, status
    found = {}
    for project in json.loads(body)["projects"]:
        status, body = get(url, f"/simple/{project['name']}/", accept=JSON)
        assert status == 200, status
        for entry in json.loads(body)["files"]:
            found[entry["filename"]] = (project["name"], entry["hashes"]["sha256"])
    return found


def visible_files(url: str) -> dict[str, str]:
    """filename -> sha256 of every file the simple API lists."""
    return {filename: sha256 for filename, (_project, sha256) in listed_files(url).items()}


def downloaded_sha256(url: str, project: str, filename: str) -> str | None:
    status, body = get(url, f"/files/{project}/{filename}")
    return hashlib.sha256(body).hexdigest() if status == 200 else None


def big_wheel(
    directory: Path, name: str, version: str, size: int, *, metadata: str | None = None
) -> Path:
    """A valid wheel holding *size* random (incompressible) bytes, stored uncompressed."""
    base = dist_name(name)
    dist_info = f"{base}-{version}.dist-info"
    files = {
        f"{base}/__init__.py": b"",
        f"{base}/blob.bin": os.urandom(size),
        f"{dist_info}/METADATA": (metadata or metadata_text(name, version)).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "\n".join(_record_line(p, d) for p, d in files.items()) + f"\n{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    path = directory / f"{base}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def cli_env(data_dir: Path) -> dict[str, str]:
    # TEAMINDEX_DATABASE_URL stays: on PostgreSQL (the settings fixture sets it) it is the
    # database that goes with the test's data dir.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TEAMINDEX_") or k == "TEAMINDEX_DATABASE_URL"
    }
    env.update(TEAMINDEX_DATA_DIR=str(data_dir), TEAMINDEX_PASSWORD_HASH=FAST_HASH)
    return env


def run_cli(data_dir: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "teamindex", *args],
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def add_users(data_dir: Path) -> None:
    """A new data dir with users alice and root (admin), as `teamindex adduser` makes them
    (in TEAMINDEX_DATABASE_URL's database when set, as the servers cli_env() starts)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(os.environ.get("TEAMINDEX_DATABASE_URL") or data_dir / "teamindex.sqlite3")
    db.migrate()
    for name, admin in (("alice", False), ("root", True)):
        db.add_user(name, hash_password(PASSWORD, FAST_HASH), is_admin=admin, now=utc_now())
    db.close()


@dataclass
class ServerProcess:
    """`python -m teamindex serve --port 0` with its stderr in a file."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    data_dir: Path,
    log: Path,
    *,
    threads: int = 8,
    workers: int = 1,
    timeout: float = 20.0,
    extra_env: dict[str, str] | None = None,
    new_session: bool = False,
) -> ServerProcess:
    """`extra_env` adds settings (a shared database and bucket: tests/test_two_nodes.py);
    `new_session` makes the server a process group of its own, for a kill -9 of it all."""
    handle = log.open("ab")
    start = log.stat().st_size
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "teamindex",
            "serve",
            "--port",
            "0",
            "--threads",
            str(threads),
            "--workers",
            str(workers),
        ],
        env=cli_env(data_dir) | (extra_env or {}),
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=handle,
        start_new_session=new_session,
    )
    handle.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as reader:
            reader.seek(start)
            match = SERVE_LINE.search(reader.read().decode(errors="replace"))
        if match:
            return ServerProcess(process, match.group(1), log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(10)
    raise AssertionError(f"server did not start:\n{log.read_text(errors='replace')}")
