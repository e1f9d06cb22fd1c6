"""Fixtures for end-to-end tests: a live index that logs what it served, isolated client
environments, and distributions (fast ones from builders.py, real ones from build backends).

tests/e2e is a package on purpose: a second top-level module named `conftest` would replace
tests/conftest.py in sys.modules and break `from conftest import ...` in the other tests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from builders import make_sdist, make_wheel
from conftest import PASSWORD, LiveServer, basic
from flask import Flask
from tools import client, isolated_env, run, uv
from uploading import upload

from teamindex.config import Settings

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    authorized: bool


def _served_as(entry: Seen) -> int:
    """A download's 302 is the file handed to the object store (S3 storage, redirect
    mode: the client fetched the presigned URL next): as served as a 200."""
    return 200 if entry.status == 302 and entry.path.startswith("/files/") else entry.status


@dataclass
class RequestLog:
    """Every request the live server answered, recorded by wrapping app.wsgi_app."""

    entries: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Seen) -> None:
        with self.lock:
            self.entries.append(entry)

    def find(
        self, method: str | None = None, status: int | None = None, *, contains: str = ""
    ) -> list[Seen]:
        with self.lock:
            return [
                e
                for e in self.entries
                if (method is None or e.method == method)
                and (status is None or _served_as(e) == status)
                and contains in e.path
            ]

    def paths(self, method: str | None = None, status: int | None = None) -> list[str]:
        return [entry.path for entry in self.find(method, status)]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """On S3 (TEAMINDEX_TEST_STORAGE=s3) the real clients follow the presigned redirect,
    the default; the route tests' Flask client reads streamed bytes instead."""
    return replace(settings, s3_downloads="redirect") if settings.storage else settings


@pytest.fixture
def request_log(app: Flask) -> RequestLog:
    """Record method, path, status and whether credentials came along; teamindex code is
    untouched (Flask.__call__ looks wsgi_app up on every request)."""
    log = RequestLog()
    inner = app.wsgi_app

    def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            log.add(
                Seen(
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    int(status.split(" ", 1)[0]),
                    "HTTP_AUTHORIZATION" in environ,
                )
            )
            return start_response(status, headers, exc_info)

        return inner(environ, start)

    app.wsgi_app = recording  # type: ignore[method-assign]
    return log


@dataclass
class Index:
    """The live server as the clients see it, plus what it logged."""

    live: LiveServer
    log: RequestLog
    user: str = "alice"
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def simple_url(self) -> str:
        """/simple/ without credentials."""
        return f"{self.live.url}/simple/"

    @property
    def upload_url(self) -> str:
        return self.live.upload_url

    def auth_url(self, user: str | None = None, password: str | None = None) -> str:
        """/simple/ with credentials in the URL."""
        return self.live.index_url(user or self.user, password or self.password)

    def get(
        self, path: str, *, accept: str = JSON_TYPE, auth: tuple[str, str] | None = None
    ) -> tuple[int, Message, bytes]:
        """A GET straight from the test (no client): status, headers (case-insensitive, as
        waitress title-cases names: "Www-Authenticate") and body."""
        user, password = auth or (self.user, self.password)
        request = urllib.request.Request(
            self.url + path, headers={"Accept": accept, **basic(user, password)}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def project_json(self, name: str) -> dict[str, Any]:
        status, _headers, body = self.get(f"/simple/{name}/")
        assert status == 200, body
        page: dict[str, Any] = json.loads(body)
        return page

    def files(self, name: str) -> dict[str, str]:
        """filename -> sha256 as the JSON project page lists them."""
        return {f["filename"]: f["hashes"]["sha256"] for f in self.project_json(name)["files"]}


@pytest.fixture
def index(live_server: LiveServer, request_log: RequestLog) -> Index:
    return Index(live_server, request_log)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes_of(paths: Iterable[Path]) -> dict[str, str]:
    return {path.name: sha256_of(path) for path in paths}


def seed(app: Flask, *paths: Path, user: str = "alice") -> None:
    """Put distributions into the index through the upload API in-process (set-up for the
    consumer tests; the publish tests upload with the real clients)."""
    http = app.test_client()
    for path in paths:
        response = upload(http, path, user)
        assert response.status_code == 200, response.get_data(as_text=True)


# -- distributions ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """team-demo 0.1.0 as a wheel and an sdist (builders.py: quick, no backend)."""
    directory = tmp_path_factory.mktemp("demo-dists")
    return [
        make_wheel(directory, "Team_Demo", "0.1.0", requires_python=">=3.8"),
        make_sdist(directory, "Team_Demo", "0.1.0", requires_python=">=3.8"),
    ]


@pytest.fixture(scope="session")
def conflicting_wheel(tmp_path_factory: pytest.TempPathFactory, demo_dists: list[Path]) -> Path:
    """The same filename as demo_dists[0] with other bytes."""
    wheel = make_wheel(
        tmp_path_factory.mktemp("conflict"),
        "Team_Demo",
        "0.1.0",
        requires_python=">=3.8",
        padding=7,
    )
    assert wheel.name == demo_dists[0].name
    assert sha256_of(wheel) != sha256_of(demo_dists[0])
    return wheel


BUILT_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "Team.Built"
version = "1.2.0"
description = "Built by python -m build for the end-to-end tests"
readme = "README.md"
requires-python = ">=3.9"
keywords = ["team", "index"]
classifiers = ["Programming Language :: Python :: 3"]

[project.urls]
Homepage = "https://example.invalid/team-built"

[tool.hatch.build.targets.wheel]
packages = ["src/team_built"]
"""


@pytest.fixture(scope="session")
def built_dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A real project (hatchling backend, fetched from PyPI) built by `python -m build`."""
    python = client("build")
    root = tmp_path_factory.mktemp("built")
    project = root / "team-built"
    (project / "src" / "team_built").mkdir(parents=True)
    (project / "pyproject.toml").write_text(BUILT_PYPROJECT)
    (project / "README.md").write_text("# Team.Built\n\nA real build.\n")
    (project / "src" / "team_built" / "__init__.py").write_text('GREETING = "built"\n')
    run(
        [python, "-m", "build", "--outdir", root / "dist", project],
        env=isolated_env(root),
        timeout=300,
    )
    dists = sorted((root / "dist").iterdir())
    assert [d.name for d in dists] == [
        "team_built-1.2.0-py3-none-any.whl",
        "team_built-1.2.0.tar.gz",
    ]
    return dists


def copy_to(directory: Path, paths: Iterable[Path]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(path, directory / path.name)) for path in paths]


@pytest.fixture
def venv_python(tmp_path: Path, env: dict[str, str]) -> Path:
    """A fresh, empty venv (made by uv) to install into."""
    target = tmp_path / "venv"
    run([uv(), "venv", "--quiet", target], env=env)
    return target / "bin" / "python"


def twine_upload(index: Index, *files: Path) -> list[str]:
    return [
        str(client("twine")),
        "upload",
        "--non-interactive",
        "--disable-progress-bar",
        "--repository-url",
        index.upload_url,
        "-u",
        index.user,
        "-p",
        index.password,
        *map(str, files),
    ]
