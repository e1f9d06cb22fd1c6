"""A small PEP 691 index on loopback to proxy in tests: JSON pages, files and .metadata from
memory, with switchable failure, latency and tampering, and a log of what it was asked."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import waitress
from builders import make_sdist, make_wheel
from conftest import RunningServer
from flask import Flask, Response, abort, request
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from teamindex.ops.serving import serve_until

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class Published:
    filename: str
    data: bytes
    upload_time: datetime | None
    metadata: bytes | None = None
    requires_python: str | None = None
    yanked: bool | str = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def version_of(filename: str) -> Version:
    """The version a wheel or sdist filename names (packaging's parsers, as an index would)."""
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[1]
    return parse_sdist_filename(filename)[1]


@dataclass
class FakeUpstream:
    projects: dict[str, list[Published]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # PEP 792 per project
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail: int | None = None  # answer every request with this status
    delay: float = 0.0  # seconds before each answer
    tamper: set[str] = field(default_factory=set)  # filenames served with other bytes
    password: str | None = None  # require Basic auth user:password
    url: str = ""

    def publish(
        self,
        directory: Path,
        name: str,
        version: str,
        *,
        age: timedelta | None = timedelta(days=30),
        sdist: bool = False,
        **kwargs: Any,
    ) -> Published:
        """Build a wheel (or sdist) and list it upstream, uploaded `age` ago (None: no time)."""
        directory.mkdir(parents=True, exist_ok=True)
        maker = make_sdist if sdist else make_wheel
        path = maker(directory, name, version, **kwargs)
        metadata = None
        if not sdist:
            with zipfile.ZipFile(path) as archive:
                metadata = next(
                    archive.read(n) for n in archive.namelist() if n.endswith(".dist-info/METADATA")
                )
        moment = None if age is None else datetime.now(timezone.utc) - age
        item = Published(path.name, path.read_bytes(), moment, metadata)
        self.projects.setdefault(canonicalize_name(name), []).append(item)
        return item

    def count(self, contains: str) -> int:
        with self.lock:
            return sum(contains in path for path in self.seen)

    def page(self, name: str) -> dict[str, Any]:
        files = []
        for item in self.projects[name]:
            entry: dict[str, Any] = {
                "filename": item.filename,
                "url": f"../../files/{item.filename}",
                "hashes": {"sha256": item.sha256},
                "size": len(item.data),
                "yanked": item.yanked,
            }
            if item.upload_time is not None:
                entry["upload-time"] = item.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if item.requires_python:
                entry["requires-python"] = item.requires_python
            if item.metadata is not None:
                entry["core-metadata"] = {"sha256": hashlib.sha256(item.metadata).hexdigest()}
            files.append(entry)
        # PEP 700: api-version 1.1 and later list every version of the project.
        versions = [str(v) for v in sorted({version_of(i.filename) for i in self.projects[name]})]
        page: dict[str, Any] = {
            "meta": {"api-version": "1.4"},
            "name": name,
            "versions": versions,
            "files": files,
        }
        if name in self.status:
            page["project-status"] = {"status": self.status[name], "reason": "see upstream"}
        return page

    def app(self) -> Flask:
        app = Flask("fake-upstream")

        @app.before_request
        def _record() -> Response | None:
            with self.lock:
                self.seen.append(request.path)
            if self.delay:
                time.sleep(self.delay)
            if self.fail is not None:
                return Response("upstream broken", status=self.fail)
            if self.password is not None:
                auth = request.authorization
                if auth is None or auth.password != self.password:
                    return Response("no", status=401)
            return None

        @app.get("/simple/<name>/")
        def project(name: str) -> Response:
            if name not in self.projects:
                abort(404)
            body = json.dumps(self.page(name)).encode()
            etag = hashlib.sha256(body).hexdigest()[:16]
            if request.headers.get("If-None-Match") == f'"{etag}"':
                return Response(status=304, headers={"ETag": f'"{etag}"'})
            return Response(body, content_type=JSON_TYPE, headers={"ETag": f'"{etag}"'})

        @app.get("/files/<filename>")
        def download(filename: str) -> Response:
            wants_metadata = filename.endswith(".metadata")
            base = filename.removesuffix(".metadata")
            for items in self.projects.values():
                for item in items:
                    if item.filename == base:
                        if wants_metadata:
                            if item.metadata is None:
                                abort(404)
                            data = item.metadata
                            if base in self.tamper:
                                data += b"X-Evil: 1\n"
                            return Response(data, content_type="text/plain")
                        data = item.data
                        if base in self.tamper:
                            data = data[:-1] + bytes([data[-1] ^ 1])
                        return Response(data, content_type="application/octet-stream")
            abort(404)

        return app


@contextlib.contextmanager
def running_upstream() -> Iterator[FakeUpstream]:
    """A FakeUpstream served by waitress on a free loopback port (its url is set)."""
    fake = FakeUpstream()
    server = waitress.create_server(fake.app(), host="127.0.0.1", port=0, threads=8)
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop, 5.0), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.socket.getsockname()[1]}/simple/"
    try:
        yield fake
    finally:
        RunningServer(server, thread, stop).stop()
