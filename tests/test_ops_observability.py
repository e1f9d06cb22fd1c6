"""/metrics (who may read it, what it counts) and the request log (one line per request,
never a secret)."""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from conftest import PASSWORD, USERS, add_user, basic
from prometheus_client.parser import text_string_to_metric_families
from uploading import upload

from teamindex.app import create_app
from teamindex.ops.serving import GIL_SWITCH_SECONDS, OncePer, tune_for_serving

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<ip>\S+) (?P<user>\S+) "
    r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) (?P<bytes>\d+|-) \d+\.\dms$'
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client, user: str = "root") -> dict:
    response = client.get("/metrics", headers=basic(user))
    assert response.status_code == 200, response.status
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


# -- /metrics: access ---------------------------------------------------------------------------


def test_metrics_needs_an_admin(client):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    assert client.get("/metrics", headers=basic("root", "wrong-password")).status_code == 401
    assert client.get("/metrics", headers=basic("alice")).status == (
        "403 Metrics are for administrators."
    )
    assert client.get("/metrics", headers=basic("root")).status_code == 200


def app_with(settings, **changes):
    app = create_app(dataclasses.replace(settings, **changes))
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    return app


@pytest.mark.parametrize(
    ("allow", "status"),
    [(("127.0.0.1",), 200), (("127.0.0.0/8", "10.0.0.0/8"), 200), (("10.0.0.0/8",), 401)],
)
def test_metrics_allow_lets_listed_addresses_in_without_login(settings, allow, status):
    client = app_with(settings, metrics_allow=allow).test_client()
    # The Flask test client connects from 127.0.0.1.
    assert client.get("/metrics").status_code == status


# -- /metrics: what it counts ------------------------------------------------------------------


def test_metrics_count_requests_uploads_downloads_and_failures(client, tmp_path: Path):
    wheel = make_wheel(tmp_path, "demo", "1.0")
    sdist = make_sdist(tmp_path, "demo", "1.0")
    assert upload(client, wheel).status_code == 200
    assert upload(client, sdist).status_code == 200
    assert upload(client, wheel, sha256_digest="0" * 64).status_code == 400
    for _ in range(3):
        assert client.get("/simple/", headers=basic("alice")).status_code == 200
    assert client.get("/simple/", headers=basic("alice", "bad-password")).status_code == 401
    assert client.get("/simple/").status_code == 401  # no credentials: not a failure
    assert fetch(client, f"/files/demo/{wheel.name}", headers=basic("bob")).status_code == 200
    meta = fetch(client, f"/files/demo/{wheel.name}.metadata", headers=basic("bob"))
    assert meta.status_code == 200
    assert client.get("/no/such/page", headers=basic("alice")).status_code == 404

    found = scrape(client)
    size = wheel.stat().st_size + sdist.stat().st_size
    route = ("route", "/simple/")
    assert (
        found["teamindex_http_requests_total", (("method", "GET"), route, ("status", "200"))] == 3
    )
    assert (
        found["teamindex_http_requests_total", (("method", "GET"), route, ("status", "401"))] == 2
    )
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert found["teamindex_http_requests_total", unmatched] == 1
    assert found["teamindex_uploads_total", (("status", "200"),)] == 2
    assert found["teamindex_uploads_total", (("status", "400"),)] == 1
    assert found["teamindex_upload_bytes_total", ()] == size
    assert found["teamindex_downloads_total", (("kind", "dist"),)] == 1
    assert found["teamindex_downloads_total", (("kind", "metadata"),)] == 1
    assert found["teamindex_auth_failures_total", (("reason", "invalid"),)] == 1
    assert found["teamindex_storage_bytes", ()] == size
    assert found["teamindex_storage_files", ()] == 2
    assert found["teamindex_http_request_duration_seconds_count", (route,)] == 5
    assert ("process_resident_memory_bytes", ()) in found


def test_each_app_counts_for_itself(settings, tmp_path):
    first = app_with(settings).test_client()
    first.get("/simple/", headers=basic("alice"))
    second = app_with(dataclasses.replace(settings, data_dir=tmp_path / "other")).test_client()
    found = scrape(second)
    assert not any(
        name == "teamindex_http_requests_total" and ("route", "/simple/") in labels
        for name, labels in found
    )


# -- request log ---------------------------------------------------------------------------------


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "teamindex.access"]


def fetch(client, path: str, *, method: str = "GET", headers: dict | None = None):
    """A request whose response is read and closed, as a WSGI server does (the log line is
    written when the body is closed)."""
    with client.open(path, method=method, headers=headers or {}) as response:
        response.get_data()
    return response


def test_one_line_per_request_with_user_status_and_size(client, caplog):
    caplog.set_level(logging.INFO, logger="teamindex.access")
    response = fetch(client, "/simple/", headers=basic("alice"))
    fetch(client, "/simple/")
    fetch(client, "/legacy/", method="POST", headers=basic("bob", "nope"))
    lines = access_lines(caplog)
    assert len(lines) == 3
    first, second, third = (LOG_LINE.match(line) for line in lines)
    assert first and second and third, lines
    assert first.group("ip", "user", "method", "path", "status") == (
        "127.0.0.1",
        "alice",
        "GET",
        "/simple/",
        "200",
    )
    assert int(first.group("bytes")) == len(response.data)
    assert second.group("user", "status") == ("-", "401")
    assert third.group("user", "method", "path", "status") == ("-", "POST", "/legacy/", "401")


def test_log_never_holds_credentials_or_query_strings(client, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    assert upload(client, wheel).status_code == 200
    fetch(client, "/simple/?api_key=hunter2-secret", headers=basic("alice"))
    fetch(client, "/simple/", headers=basic("root", "the-wrong-password"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, "hunter2-secret", "the-wrong-password", "Basic ", "api_key"):
        assert secret not in text
    assert any(line.endswith(("ms",)) for line in access_lines(caplog))


def test_odd_paths_stay_on_one_line(client, caplog):
    caplog.set_level(logging.INFO, logger="teamindex.access")
    fetch(client, "/simple/a%0Ab%20c%FF/", headers=basic("alice"))
    (line,) = access_lines(caplog)
    assert "\n" not in line
    assert '"GET /simple/a%0Ab%20c%' in line  # the test client turns %FF into U+FFFD
    assert LOG_LINE.match(line)


def test_downloads_through_waitress_are_logged_after_the_body(live_server, caplog, tmp_path):
    """waitress sends files through its file wrapper; the log line still comes, with the
    size, once the body is out."""
    caplog.set_level(logging.INFO, logger="teamindex.access")
    wheel = make_wheel(tmp_path, "demo", "1.0", padding=100_000)
    client = live_server.app.test_client()
    assert upload(client, wheel).status_code == 200
    request = urllib.request.Request(
        f"{live_server.url}/files/demo/{wheel.name}", headers=basic("alice")
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    assert body == wheel.read_bytes()
    for _ in range(100):
        lines = [line for line in access_lines(caplog) if "/files/" in line]
        if lines:
            break
        time.sleep(0.02)
    (line,) = lines
    match = LOG_LINE.match(line)
    assert match
    assert match.group("user", "status", "bytes") == ("alice", "200", str(len(body)))


def test_a_crashing_request_is_logged_as_500(client, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="teamindex.access")
    monkeypatch.setattr("teamindex.db.Database.list_projects", lambda *_a, **_k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # TESTING propagates; waitress would answer 500
        client.get("/simple/", headers=basic("alice"))
    (line,) = access_lines(caplog)
    assert '"GET /simple/" 500 0 ' in line


# -- waitress' queue-depth warnings ----------------------------------------------------------------


def test_queue_warnings_pass_once_a_minute_with_a_count():
    now = [100.0]
    once = OncePer(60, clock=lambda: now[0])

    def record(depth: int) -> logging.LogRecord:
        return logging.LogRecord(
            "waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (depth,), None
        )

    first = record(3)
    assert once.filter(first) and first.getMessage() == "Task queue depth is 3"
    assert not any(once.filter(record(n)) for n in range(4, 9))
    now[0] += 59.9
    assert not once.filter(record(9))
    now[0] += 0.1
    later = record(2)
    assert once.filter(later)
    assert later.getMessage() == "Task queue depth is 2 (and 6 more like it in the last 60 s)"
    now[0] += 60
    quiet = record(1)
    assert once.filter(quiet) and quiet.getMessage() == "Task queue depth is 1"


def test_tune_for_serving_sets_the_process_up(monkeypatch):
    queue_log = logging.getLogger("waitress.queue")
    switch_interval = sys.getswitchinterval()
    generations: list[int] = []
    collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda generation=2: generations.append(generation))
    try:
        tune_for_serving()
        # No full collection at start-up (30-70 ms of a cold start for nothing to free).
        assert generations and max(generations) < 2
        monkeypatch.setattr(gc, "collect", collect)
        assert gc.get_freeze_count() > 10_000  # the app, Flask and every imported module
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_SECONDS)
        assert any(isinstance(f, OncePer) for f in queue_log.filters)
    finally:
        gc.unfreeze()
        sys.setswitchinterval(switch_interval)
        for once in [f for f in queue_log.filters if isinstance(f, OncePer)]:
            queue_log.removeFilter(once)
