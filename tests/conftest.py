"""Shared fixtures: settings with cheap hashing, the app, a client, and a live waitress server."""

from __future__ import annotations

import base64
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import waitress
from flask import Flask
from flask.testing import FlaskClient
from pg_support import pg_cluster, wanted  # noqa: F401 - pg_cluster: a fixture for all tests
from s3_support import SeaweedS3, register_store, start_seaweedfs, test_storage_is_s3

from teamindex.access.auth import hash_password, new_token_secret, token_digest
from teamindex.app import FORM_OVERHEAD, create_app
from teamindex.clock import utc_now
from teamindex.config import Settings
from teamindex.context import services
from teamindex.ops.serving import make_server, serve_until

if TYPE_CHECKING:
    from upstream_support import FakeUpstream

# Tests lower the hashing cost (devpi does the same); production uses scrypt.
FAST_HASH = "pbkdf2:sha256:1000"
PASSWORD = "correct-horse"
USERS = {"alice": False, "bob": False, "root": True}  # name -> is_admin


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def page_requests(
    logins: dict[str, dict[str, str]],
    paths: Iterable[str],
    accepts: Iterable[str | None],
    encodings: Iterable[str | None] = (None,),
) -> Iterator[tuple[tuple[str, str, str | None, str | None], str, dict[str, str]]]:
    """Every combination of a login's headers, a path, an Accept and an Accept-Encoding (None:
    the header is not sent), as (case, path, headers): the page requests that hot path tests
    send to both paths."""
    encodings = list(encodings)
    for who, login in logins.items():
        for path, accept in itertools.product(paths, accepts):
            for encoding in encodings:
                headers = dict(login)
                if accept is not None:
                    headers["Accept"] = accept
                if encoding is not None:
                    headers["Accept-Encoding"] = encoding
                yield (who, path, accept, encoding), path, headers


def add_user(app: Flask, name: str, password: str = PASSWORD, *, admin: bool = False) -> None:
    services_ = app.extensions["teamindex"]
    services_.db.add_user(name, hash_password(password, FAST_HASH), is_admin=admin, now=utc_now())


def add_token(app: Flask, user: str, **fields: object) -> tuple[int, str]:
    """Create an API token for `user` straight in the database; returns (id, secret).
    Defaults: upload scope, every project, any address, no expiry."""
    db = app.extensions["teamindex"].db
    secret = new_token_secret()
    options = {"scope": "upload", "projects": [], "allow_ips": [], "note": "", "expires": None}
    token_id = db.add_token(
        db.get_user(user).id, token_digest(secret), now=utc_now(), **(options | fields)
    )
    return token_id, secret


def database_for_test(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database's URL with TEAMINDEX_TEST_DATABASE=postgresql, else ""
    (SQLite in the data dir)."""
    if not wanted():
        return ""
    return request.getfixturevalue("pg_cluster").fresh_database()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 endpoint for the whole session (s3_support)."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def settings(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    database_url = database_for_test(request)
    if database_url:
        # CLI commands the test runs (in-process or as subprocesses) find the same database.
        monkeypatch.setenv("TEAMINDEX_DATABASE_URL", database_url)
    base = Settings(
        data_dir=tmp_path / "data", password_hash=FAST_HASH, threads=4, database_url=database_url
    )
    if not test_storage_is_s3():
        return base
    # Stream: the Flask test client reads the bytes (e2e's real clients follow redirects).
    s3 = request.getfixturevalue("s3_server").settings(base, s3_downloads="stream")
    return register_store(s3)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    yield app
    with app.app_context():
        services().db.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_app(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Callable[..., Flask]]:
    """Apps with non-default settings (same users as the `app` fixture), in their own
    data dir (and database): `make_app(anonymous_read=True)`."""
    made: list[Flask] = []
    own = {"database_url": database_for_test(request)} if settings.database_url else {}
    if own:  # CLI commands of the test act on this app's data dir, so on its database
        request.getfixturevalue("monkeypatch").setenv("TEAMINDEX_DATABASE_URL", own["database_url"])

    def factory(**changes: object) -> Flask:
        custom = replace(settings, data_dir=settings.data_dir.parent / "custom", **(own | changes))
        if custom.storage:  # its own data dir: its own prefix too
            custom = register_store(replace(custom, storage=settings.storage + "custom/"))
        app = create_app(custom)
        app.config["TESTING"] = True
        for name, admin in USERS.items():
            add_user(app, name, admin=admin)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["teamindex"].db.close()


@dataclass
class LiveServer:
    """A real waitress server on a free loopback port."""

    app: Flask
    url: str  # http://127.0.0.1:PORT (no trailing slash)
    settings: Settings

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def index_url(self, user: str | None = "alice", password: str = PASSWORD) -> str:
        """The /simple/ URL, with credentials embedded when a user is given."""
        if user is None:
            return f"{self.url}/simple/"
        return f"http://{user}:{password}@{self.host}/simple/"

    @property
    def upload_url(self) -> str:
        return f"{self.url}/legacy/"


@dataclass
class RunningServer:
    """waitress in a thread, stopped from that thread (closing its sockets from another
    thread while it polls them races: EBADF and unclosed-socket warnings)."""

    server: waitress.server.BaseWSGIServer
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self) -> None:
        self.stop_event.set()
        # The server thread may already have stopped and closed its trigger (EBADF): then
        # there is nothing left to wake.
        with contextlib.suppress(OSError):
            self.server.pull_trigger()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the test server did not stop"


def start_server(app: Flask, settings: Settings) -> tuple[LiveServer, RunningServer]:
    options = settings.waitress_options(FORM_OVERHEAD) | {"host": "127.0.0.1", "port": 0}
    server = make_server(app, options)
    port = server.socket.getsockname()[1]
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_until, args=(server, stop, 5.0), name="waitress", daemon=True
    )
    thread.start()
    return LiveServer(app, f"http://127.0.0.1:{port}", settings), RunningServer(
        server, thread, stop
    )


def start_cold_server(
    settings: Settings, build_flask: Callable[..., object] | None = None
) -> tuple[str, RunningServer]:
    """`serve`'s own stack (boot.serving) on a free loopback port, answering while its Flask
    loads on a thread (`build_flask(svc, counters)`, app.flask_app's by default): (base URL,
    the running server)."""
    from teamindex.app import flask_app
    from teamindex.boot import serving
    from teamindex.ops.serving import make_wsgi_server

    def default(svc: object, counters: object) -> object:
        return flask_app(svc, counters).wsgi_app  # type: ignore[arg-type]

    stack = serving(settings, build_flask or default)  # type: ignore[arg-type]
    options = settings.waitress_options(FORM_OVERHEAD) | {"host": "127.0.0.1", "port": 0}
    server = make_wsgi_server(stack.wsgi, stack.svc, options, stack.pre_answer)
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_until, args=(server, stop, 5.0), name="waitress", daemon=True
    )
    thread.start()
    stack.flask.start()
    port = server.socket.getsockname()[1]
    return f"http://127.0.0.1:{port}", RunningServer(server, thread, stop)


def worker_tasks(running: RunningServer) -> list[object]:
    """The requests the server hands to its worker threads from now on (a growing list);
    one it never hands over was answered on the socket thread (ops/serving.py)."""
    seen: list[object] = []
    dispatcher = running.server.task_dispatcher
    add_task = dispatcher.add_task

    def counted(task: object) -> None:
        seen.append(task)
        add_task(task)

    dispatcher.add_task = counted
    return seen


@pytest.fixture
def live_server(app: Flask, settings: Settings) -> Iterator[LiveServer]:
    live, running = start_server(app, settings)
    yield live
    running.stop()


@pytest.fixture
def anonymous_settings(settings: Settings) -> Settings:
    return replace(settings, anonymous_read=True)


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A loopback PEP 691 index to proxy, with switchable failures (upstream_support.py)."""
    from upstream_support import running_upstream  # it imports this module

    with running_upstream() as fake:
        yield fake


@pytest.fixture
def proxy(make_app: Callable[..., Flask], fake_upstream: FakeUpstream) -> Callable[..., Flask]:
    """make_app with --upstream set to the fake upstream."""

    def factory(**changes: object) -> Flask:
        return make_app(upstream=fake_upstream.url, **changes)

    return factory
