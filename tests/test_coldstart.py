"""Cold start (issue 14): `serve` imports only what serving needs.

Checked in a fresh interpreter, since this test process has imported everything already.
Each name below cost a measurable share of the ~0.3 s from spawn to the first 200.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from builders import make_wheel
from conftest import add_token, basic, start_cold_server
from flask import Flask
from uploading import upload

SERVE_IMPORTS = """
import json, sys
from teamindex import cli
parser = cli.build_parser(["serve", "--port", "0"])
parser.parse_args(["serve", "--port", "0"])
import teamindex.boot, teamindex.ops.serving, teamindex.ops.workers
print(json.dumps(sorted(sys.modules)))
"""

# Loaded by each worker on a thread of its own once it answers (boot.py): the first
# requests, /simple/ pages with a token, are answered without them (~0.1 s of a start).
LOADED_AFTER_LISTENING = (
    "flask",
    "werkzeug",  # headers.py reads the first requests' headers (tests/test_headers.py)
    "flask_httpauth",
    "jinja2",
    "click",
    "itsdangerous",
    "teamindex.app",
    "teamindex.web",
    "teamindex.api.simple",
    "teamindex.api.upload",
    "teamindex.access.httpauth",
    "packaging.tags",  # with packaging.utils: platform, sysconfig, subprocess
    "prometheus_client",  # with http.server for its exporters (ops/tally.py)
)

# Never needed to serve without --upstream: the other commands' modules (backup, integrity,
# removal, nginx-config) and the upstream proxy's HTTP client.
NOT_AT_START = (
    "teamindex.cli.access",
    "teamindex.cli.docs",
    "teamindex.cli.ops",
    "teamindex.cli.throttle",
    "teamindex.cli.upstream",
    "teamindex.index.backup",
    "teamindex.index.integrity",
    "urllib3",
    # The web pages: registered on the first request for one (web/__init__.py: LazyPages).
    "teamindex.web.routes",
    "teamindex.web.pages",
    "teamindex.web.admin",
    "teamindex.web.publishers",
    "teamindex.index.docstore",
    # The optional backends' drivers, on the defaults (SQLite, the data dir): psycopg alone
    # cost ~0.12 s of every start while the database errors named it at import.
    "psycopg",
    "psycopg_pool",
    "boto3",
    "botocore",
    "teamindex.db.engines.postgresql",
    "teamindex.index.storage.s3",
)


def _modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout))


def test_serve_does_not_import_what_serving_never_needs() -> None:
    loaded = _modules(SERVE_IMPORTS)
    assert "teamindex.boot" in loaded
    assert sorted(loaded & set(NOT_AT_START)) == []
    assert sorted(loaded & set(LOADED_AFTER_LISTENING)) == []


def test_other_commands_and_help_still_see_every_command() -> None:
    code = (
        "import json, sys\nfrom teamindex import cli\n"
        "names = set()\n"
        "for argv in (['token', 'list'], ['--help'], []):\n"
        "    p = cli.build_parser(argv)\n"
        "    names |= set(p._subparsers._group_actions[0].choices)\n"
        "print(json.dumps(sorted(names)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    names = set(json.loads(out.stdout))
    assert {"serve", "token", "grant", "backup", "check", "upload-docs", "cache"} <= names


def test_the_upstream_client_still_works_when_imported_lazily() -> None:
    code = (
        "from teamindex.upstream.client import UpstreamClient, _failure\n"
        "import urllib3\n"
        "c = UpstreamClient('http://u:p@127.0.0.1:9/simple/')\n"
        "assert c._auth['authorization'].startswith('Basic ')\n"
        "assert _failure(urllib3.exceptions.ReadTimeoutError(None, '', '')).status == 504\n"
        "print('[]')\n"
    )
    _modules(code)


def test_serve_does_not_load_pyjwt_until_an_oidc_exchange() -> None:
    loaded = _modules(SERVE_IMPORTS)
    assert sorted(m for m in loaded if m.split(".")[0] in ("jwt", "cryptography")) == []
    after = _modules(
        "import json, sys\nfrom teamindex.access.oidc.exchange import exchange\n"
        "from teamindex.access.oidc.exchange import ExchangeError\n"
        "try:\n    exchange(None, None, 'aud', 'not-a-jwt')\n"
        "except ExchangeError as exc:\n    assert exc.code == 'invalid-token', exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    assert "jwt" in after


def _sample(converter: object) -> object:
    """A value every converter of ours accepts."""
    from werkzeug.routing import IntegerConverter

    return 3 if isinstance(converter, IntegerConverter) else "a-b_c"


def test_url_rules_compile_their_builders_on_first_use_and_build_as_werkzeug_does(
    app: Flask,
) -> None:
    """create_app compiles no url_for() builder (two thirds of its cold-start time); the
    first build of each rule compiles it and gives werkzeug's own URL."""
    from werkzeug.routing import Map, Rule

    from teamindex.app import LazyBuilderRule

    def lazy(rule: Rule) -> bool:
        return rule._build_unknown.__name__ == "build" and rule._build.__name__ == "build"

    api = [r for r in app.url_map.iter_rules() if isinstance(r, LazyBuilderRule)]
    assert len(api) > 15 and all(lazy(r) for r in api)  # stubs, not compiled
    assert app.test_client().get("/login").status_code == 200  # registers the pages
    ours = [r for r in app.url_map.iter_rules() if isinstance(r, LazyBuilderRule)]
    assert len(ours) > 40  # every route but Flask's /static/
    assert sum(lazy(r) for r in ours) > 30  # the login page built a few URLs
    plain = Map([Rule(r.rule, **r.get_empty_kwargs()) for r in ours])
    theirs = plain.bind("index.test", "/")
    mine = app.url_map.bind("index.test", "/")
    for rule in ours:
        values = {name: _sample(conv) for name, conv in rule._converters.items()}
        for extra in ({}, {"page": "2"}):  # unknown values go to the query string
            want = theirs.build(rule.endpoint, {**values, **extra}, method=sorted(rule.methods)[0])
            got = mine.build(rule.endpoint, {**values, **extra}, method=sorted(rule.methods)[0])
            assert got == want, rule.rule
    # url_for() appends unknown values: that builder was compiled once, and is kept (for
    # each endpoint the rule werkzeug builds with; an endpoint's other rules stay lazy).
    compiled = {r.endpoint for r in ours if r._build_unknown.__name__.startswith("<builder")}
    assert compiled == {r.endpoint for r in ours}


# -- the web pages, registered on the first request for one (web/__init__.py) ------------


def _page_endpoints(app: Flask) -> list[str]:
    return sorted(e for e in app.view_functions if e.startswith(("web.", "docs.")))


def test_api_requests_leave_the_pages_unregistered_until_a_page_is_asked_for(
    app: Flask,
) -> None:
    client = app.test_client()
    assert client.get("/simple/", headers=basic("alice")).status_code == 200
    assert client.get("/simple/nothing-here/", headers=basic("alice")).status_code == 404
    assert client.get("/simple", headers=basic("alice")).status_code in (301, 308)
    assert client.get("/healthz").status_code == 200
    assert _page_endpoints(app) == []
    assert client.get("/login").status_code == 200
    assert "web.login.login" in _page_endpoints(app) or len(_page_endpoints(app)) > 20
    assert client.get("/no-such-page").status_code == 404  # as before, once registered


def test_an_unknown_url_registers_the_pages_and_gets_their_404(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/project/nothing/", headers=basic("alice")).status_code == 404
    assert _page_endpoints(app) != []


def test_a_release_link_after_publishing_redirects_to_its_page_on_a_fresh_app(
    app: Flask,
) -> None:
    """hatch's /legacy/<project>/<version>/ names a page's URL (NEEDS_PAGES)."""
    response = app.test_client().get("/legacy/demo/1.0/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/project/demo/"


def _gate(monkeypatch, wait: float = 5.0):
    """A LazyPages in front of a WSGI app whose "/slow" blocks until released; registering
    the pages is recorded instead of done."""
    from werkzeug.routing import Map, Rule

    from teamindex import web

    events: list[str] = []
    release = threading.Event()
    app = Flask("gate-test")
    app.url_map = Map([Rule("/slow", endpoint="slow"), Rule("/fast", endpoint="fast")])

    def inner(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            events.append("slow:start")
            assert release.wait(10)
            events.append("slow:end")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    def register(_app) -> None:
        events.append("register")
        _app.url_map.add(Rule("/page", endpoint="page"))

    monkeypatch.setattr(web, "_register_pages", register)
    monkeypatch.setattr(web, "LOAD_WAIT_SECONDS", wait)
    return web.LazyPages(app, inner), events, release


def _call(gate, path: str) -> tuple[str, dict[str, str]]:
    seen: dict[str, str] = {}

    def start_response(status, headers):
        seen.update(headers)
        seen["status"] = status

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "SERVER_NAME": "x"}
    environ |= {"SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    body = b"".join(gate(environ, start_response))
    return seen["status"].split()[0] + " " + body.decode(), seen


def test_the_pages_are_registered_only_while_no_request_is_being_run(monkeypatch) -> None:
    gate, events, release = _gate(monkeypatch)
    answers: dict[str, str] = {}
    slow = threading.Thread(target=lambda: answers.update(slow=_call(gate, "/slow")[0]))
    slow.start()
    while "slow:start" not in events:
        time.sleep(0.005)
    page = threading.Thread(target=lambda: answers.update(page=_call(gate, "/page")[0]))
    page.start()
    time.sleep(0.2)
    late = threading.Thread(target=lambda: answers.update(fast=_call(gate, "/fast")[0]))
    late.start()
    time.sleep(0.2)
    assert events == ["slow:start"]  # the page waits for /slow, /fast waits for the page
    release.set()
    for thread in (slow, page, late):
        thread.join(10)
    assert events == ["slow:start", "slow:end", "register"]
    assert answers == {"slow": "200 /slow", "page": "200 /page", "fast": "200 /fast"}
    assert _call(gate, "/page")[0] == "200 /page" and events.count("register") == 1


def test_a_page_request_that_cannot_wait_for_running_requests_gets_503(monkeypatch) -> None:
    gate, events, release = _gate(monkeypatch, wait=0.2)
    slow = threading.Thread(target=_call, args=(gate, "/slow"))
    slow.start()
    while "slow:start" not in events:
        time.sleep(0.005)
    answer, headers = _call(gate, "/page")
    assert answer.startswith("503") and headers["Retry-After"] == "1"
    assert _call(gate, "/fast")[0] == "200 /fast"  # API requests go on meanwhile
    release.set()
    slow.join(10)
    assert _call(gate, "/page")[0] == "200 /page"
    assert events.count("register") == 1


# -- the first requests, answered while Flask loads (boot.py) -----------------------------

FIRST_REQUEST = """
import base64, json, sys
from pathlib import Path
from teamindex.boot import serving
from teamindex.config import load_settings

def no_flask(svc, counters):
    raise AssertionError("the first request needed Flask")

stack = serving(load_settings({"data_dir": Path(sys.argv[1])}), no_flask)  # never started
answers = []
for path in ("/simple/", "/simple/demo/"):
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "x",
        "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(sys.argv[2].encode()).decode(),
        "HTTP_ACCEPT": sys.argv[3],
    }
    status = []
    body = b"".join(stack.wsgi(environ, lambda s, h, e=None: status.append(s)))
    answers.append([status[0], body.decode()])
print(json.dumps({"answers": answers, "modules": sorted(sys.modules)}))
"""


def _first_answers(settings, credentials: str, accept: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, str(settings.data_dir), credentials, accept],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_a_fresh_process_answers_token_page_requests_without_loading_flask(
    app: Flask, client, settings, tmp_path
) -> None:
    """What a CI runner's first requests need, in a process that loaded nothing else: the
    login verified and the pages rendered on the hot path, Flask never called."""
    if settings.database_url:
        pytest.skip("the subprocess opens the data dir's SQLite database")
    assert upload(client, make_wheel(tmp_path, "demo", "1.0")).status == "200 OK"
    _id, secret = add_token(app, "alice", scope="read")
    pip_accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"  # noqa: E501
    for accept in ("", pip_accept):
        found = _first_answers(settings, f"__token__:{secret}", accept)
        (root_status, root), (page_status, page) = found["answers"]
        assert root_status == "200 OK" and "demo" in root
        assert page_status == "200 OK" and "demo-1.0-py3-none-any.whl" in page
        loaded = set(found["modules"])
        assert sorted(loaded & set(LOADED_AFTER_LISTENING)) == []


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_requests_only_flask_answers_wait_for_it_to_load(app: Flask, client, settings, tmp_path):
    """While Flask loads, a fresh server answers token page requests on the hot path;
    anything else waits for Flask, then gets Flask's answer: no credentials, a wrong token,
    other routes, and a password (its check imports werkzeug, which the loading thread is
    importing: loading.py)."""
    from teamindex.app import flask_app

    assert upload(client, make_wheel(tmp_path, "demo", "1.0")).status == "200 OK"
    _id, secret = add_token(app, "alice", scope="read")
    release = threading.Event()

    def build_flask(svc, counters):
        assert release.wait(30)
        return flask_app(svc, counters).wsgi_app

    base, running = start_cold_server(settings, build_flask)
    try:
        token = basic("__token__", secret)
        assert _get(f"{base}/simple/", token)[0] == 200
        status, body = _get(f"{base}/simple/demo/", token)
        assert status == 200 and b"demo-1.0-py3-none-any.whl" in body
        waiting: dict[str, tuple[int, bytes]] = {}
        cases = {
            "anonymous": (f"{base}/simple/", {}),
            "wrong": (f"{base}/simple/", basic("__token__", "tix_" + "x" * 40)),
            "password": (f"{base}/simple/demo/", basic("alice")),
            "health": (f"{base}/healthz", {}),
        }
        threads = [
            threading.Thread(target=lambda k=k, c=c: waiting.update({k: _get(*c)}))
            for k, c in cases.items()
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        assert waiting == {}  # all wait for Flask
        release.set()
        for thread in threads:
            thread.join(30)
        assert waiting["anonymous"][0] == 401 and waiting["wrong"][0] == 401
        assert waiting["password"][0] == 200 and waiting["health"][0] == 200
    finally:
        release.set()
        running.stop()


def test_flask_that_does_not_load_in_time_or_at_all_is_a_503(monkeypatch, caplog) -> None:
    from teamindex import boot

    monkeypatch.setattr(boot, "FLASK_WAIT_SECONDS", 0.2)
    release = threading.Event()

    def slow(environ, start_response):  # the app, once built
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"loaded"]

    def build():
        assert release.wait(10)
        return slow

    deferred = boot.DeferredApp(build)
    deferred.start()
    answer, headers = _call(deferred, "/x")
    assert answer.startswith("503 teamindex is starting") and headers["Retry-After"] == "1"
    release.set()
    assert deferred.wait(10) and _call(deferred, "/x")[0] == "200 loaded"

    def broken():
        raise RuntimeError("no such module")

    failed = boot.DeferredApp(broken)
    failed.start()
    with caplog.at_level("ERROR", logger="teamindex"):
        assert not failed.wait(10)
    assert "loading the web application failed" in caplog.text
    assert _call(failed, "/x")[0].startswith("503")
