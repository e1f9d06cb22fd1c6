"""The upstream proxy over HTTP (issue 13), against a PEP 691 index on loopback."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from builders import make_wheel
from conftest import add_token, basic, start_server
from flask import Flask
from uploading import upload
from upstream_support import JSON_TYPE, FakeUpstream

JSON = {"Accept": JSON_TYPE}


def page(app: Flask, name: str, user: str = "alice", **headers: str):
    return app.test_client().get(f"/simple/{name}/", headers={**JSON, **basic(user), **headers})


def get(client, url: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    """A GET whose response is closed (send_file's file with it)."""
    response = client.get(url, headers=headers)
    try:
        return response.status_code, response.get_data(), dict(response.headers)
    finally:
        response.close()


def filenames(response) -> list[str]:
    return sorted(f["filename"] for f in response.get_json()["files"])


def protect(app: Flask, pattern: str, on: bool = True) -> None:
    """As `teamindex protect` does it: a row in the database."""
    app.extensions["teamindex"].db.set_protected(pattern, on)


def set_rule(app: Flask, name: str, **changes: str | int | None) -> None:
    """As `teamindex project set NAME --upstream/--min-age` does it."""
    app.extensions["teamindex"].db.set_upstream_rule(name, changes)


# -- pages ------------------------------------------------------------------------------------


def test_an_upstream_project_is_served_with_every_field_and_local_urls(
    proxy, fake_upstream, tmp_path
) -> None:
    wheel = fake_upstream.publish(tmp_path, "Six", "1.16.0", requires_python=">=2.7")
    wheel.requires_python = ">=2.7"
    wheel.yanked = "broken build"
    sdist = fake_upstream.publish(tmp_path, "six", "1.16.0", sdist=True)
    fake_upstream.status["six"] = "deprecated"
    app = proxy()
    response = page(app, "six")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_TYPE
    data = response.get_json()
    assert data["versions"] == ["1.16.0"]
    assert data["project-status"] == {"status": "deprecated", "reason": "see upstream"}
    assert data["meta"]["api-version"] == "1.4"  # PEP 792: status is the 1.4 addition
    by_name = {f["filename"]: f for f in data["files"]}
    entry = by_name[wheel.filename]
    assert entry["url"] == f"../../files/six/{wheel.filename}"  # never upstream's URL
    assert entry["hashes"] == {"sha256": wheel.sha256}
    assert entry["size"] == len(wheel.data)
    assert entry["requires-python"] == ">=2.7"
    assert entry["yanked"] == "broken build"
    assert entry["upload-time"].endswith("Z")
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(wheel.metadata).hexdigest()}
    assert "core-metadata" not in by_name[sdist.filename]
    html = app.test_client().get("/simple/six/", headers=basic("alice")).get_data(as_text=True)
    assert f'href="../../files/six/{wheel.filename}#sha256={wheel.sha256}"' in html
    assert 'data-yanked="broken build"' in html
    assert 'data-requires-python="&gt;=2.7"' in html
    assert '<meta name="pypi:project-status" content="deprecated">' in html
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert "127.0.0.1" not in html and "127.0.0.1" not in response.get_data(as_text=True)


def test_both_sides_list_every_version_as_pep_700_asks(proxy, fake_upstream, tmp_path) -> None:
    """api-version 1.1 and later carry `versions` (peryx refuses a page without it): the fake
    upstream's pages, and teamindex's proxied pages built from them."""
    import urllib.request

    fake_upstream.publish(tmp_path, "six", "1.10")
    fake_upstream.publish(tmp_path, "six", "1.9", sdist=True)
    fake_upstream.publish(tmp_path, "six", "1.9")
    request = urllib.request.Request(fake_upstream.url + "six/", headers=JSON)
    with urllib.request.urlopen(request, timeout=10) as answer:
        upstream = json.load(answer)
    ours = page(proxy(), "six").get_json()
    for data in (upstream, ours):
        major, minor = map(int, data["meta"]["api-version"].split("."))
        assert (major, minor) >= (1, 1)
        assert data["versions"] == ["1.9", "1.10"]


def test_root_lists_local_projects_only(proxy, fake_upstream, tmp_path) -> None:
    fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy()
    assert page(app, "six").status_code == 200
    root = app.test_client().get("/simple/", headers={**JSON, **basic("alice")}).get_json()
    assert root["projects"] == []


def test_a_name_upstream_does_not_have_is_404(proxy, fake_upstream) -> None:
    response = page(proxy(), "nothing-here")
    assert response.status_code == 404
    assert fake_upstream.count("/simple/nothing-here/") == 1


@pytest.mark.parametrize("how", ["uploaded", "reserved", "protected", "denied"])
def test_private_names_win_and_are_never_sent_upstream(
    how: str, proxy, fake_upstream, tmp_path
) -> None:
    """Dependency confusion: upstream has acme-utils 99.0; here it is private."""
    fake_upstream.publish(tmp_path / "up", "acme-utils", "99.0")
    app = proxy()
    if how == "uploaded":
        protect(app, "acme-*")  # upload before it is upstream's
        wheel = make_wheel(tmp_path, "acme-utils", "1.0")
        assert upload(app.test_client(), wheel, "alice").status_code == 200
        protect(app, "acme-*", on=False)
    elif how == "reserved":
        app.extensions["teamindex"].db.create_project("acme-utils", "acme-utils", "team", "now")
    elif how == "protected":
        protect(app, "acme-*")
    else:
        set_rule(app, "acme-utils", mode="deny")
    response = page(app, "acme-utils")
    if how == "uploaded":
        assert filenames(response) == ["acme_utils-1.0-py3-none-any.whl"]
    elif how == "reserved":
        assert response.status_code == 200 and filenames(response) == []  # as without upstream
    else:
        assert response.status_code == 404
    download = app.test_client().get(
        "/files/acme-utils/acme_utils-99.0-py3-none-any.whl", headers=basic("alice")
    )
    assert download.status_code == 404
    assert fake_upstream.count("acme") == 0


def test_other_spellings_of_a_private_name_in_file_urls_are_never_sent_upstream(
    proxy, fake_upstream, tmp_path
) -> None:
    """Protected patterns and rules hold normalized names; a hand-made file URL spelling the
    name otherwise matched none of them and went upstream (which normalizes it)."""
    fake_upstream.publish(tmp_path, "acme-utils", "99.0")
    app = proxy()
    protect(app, "acme-*")
    for spelled in ("Acme-Utils", "acme_utils", "ACME.utils"):
        url = f"/files/{spelled}/acme_utils-99.0-py3-none-any.whl"
        assert get(app.test_client(), url, basic("alice"))[0] == 404
    assert fake_upstream.count("cme") == 0


def test_an_admin_opts_a_project_into_mixing(proxy, fake_upstream, tmp_path) -> None:
    fake_upstream.publish(tmp_path / "up", "forked", "1.0")
    fake_upstream.publish(tmp_path / "up", "forked", "2.0")
    app = proxy()
    protect(app, "forked")
    fork = make_wheel(tmp_path, "forked", "2.0.post1")
    assert upload(app.test_client(), fork, "alice").status_code == 200
    assert page(app, "forked").get_json()["versions"] == ["2.0.post1"]  # warm the hot path
    set_rule(app, "forked", mode="allow")  # next request: mixed
    data = page(app, "forked").get_json()
    assert data["versions"] == ["1.0", "2.0", "2.0.post1"]
    set_rule(app, "forked", mode=None)
    assert page(app, "forked").get_json()["versions"] == ["2.0.post1"]


# -- cooldown ---------------------------------------------------------------------------------


def test_young_files_are_hidden_and_refused_until_exempted(proxy, fake_upstream, tmp_path) -> None:
    old = fake_upstream.publish(tmp_path, "fresh", "1.0", age=timedelta(days=10))
    young = fake_upstream.publish(tmp_path, "fresh", "1.1", age=timedelta(hours=2))
    undated = fake_upstream.publish(tmp_path, "fresh", "1.2", age=None)
    app = proxy(upstream_min_age=3 * 86400)
    assert filenames(page(app, "fresh")) == [old.filename]
    for hidden in (young, undated):
        refused = app.test_client().get(f"/files/fresh/{hidden.filename}", headers=basic("alice"))
        assert refused.status_code == 404
        assert "upstream policy" in refused.status
        refused.close()
    set_rule(app, "fresh", min_age=0)
    assert filenames(page(app, "fresh")) == sorted([old.filename, young.filename, undated.filename])
    got = get(app.test_client(), f"/files/fresh/{young.filename}", basic("alice"))
    assert got[0] == 200 and got[1] == young.data


def test_exclude_newer_cuts_off_by_upstream_upload_time(proxy, fake_upstream, tmp_path) -> None:
    from datetime import datetime, timezone

    fake_upstream.publish(tmp_path, "pinned", "1.0", age=timedelta(days=40))
    fake_upstream.publish(tmp_path, "pinned", "2.0", age=timedelta(days=10))
    cutoff = datetime.now(timezone.utc) - timedelta(days=20)
    app = proxy(upstream_min_age=0, upstream_exclude_newer=cutoff)
    assert page(app, "pinned").get_json()["versions"] == ["1.0"]


# -- files ------------------------------------------------------------------------------------


def test_a_file_is_fetched_once_verified_and_then_served_from_disk(
    proxy, fake_upstream, tmp_path
) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy()
    client = app.test_client()
    url = f"/files/six/{wheel.filename}"
    status, data, headers = get(client, url, basic("alice"))
    assert status == 200
    assert data == wheel.data
    assert headers["ETag"] == f'"{wheel.sha256}"'
    assert headers["Content-Length"] == str(len(wheel.data))
    status, data, headers = get(client, url, basic("alice"))
    assert data == wheel.data
    assert headers["ETag"] == f'"{wheel.sha256}"'
    assert headers["Cache-Control"] == "private, max-age=31536000, immutable"
    revalidated = get(client, url, {**basic("alice"), "If-None-Match": f'"{wheel.sha256}"'})
    assert revalidated[0] == 304
    ranged = get(client, url, {**basic("alice"), "Range": "bytes=0-9"})
    assert ranged[0] == 206 and ranged[1] == wheel.data[:10]
    assert fake_upstream.count(f"/files/{wheel.filename}") == 1
    metadata = get(client, url + ".metadata", basic("alice"))
    assert metadata[0] == 200 and metadata[1] == wheel.metadata
    get(client, url + ".metadata", basic("alice"))
    assert fake_upstream.count(f"/files/{wheel.filename}.metadata") == 1


def test_a_range_request_on_a_cold_file_gets_its_range(proxy, fake_upstream, tmp_path) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    client = proxy().test_client()
    ranged = get(client, f"/files/six/{wheel.filename}", {**basic("alice"), "Range": "bytes=-10"})
    assert ranged[0] == 206 and ranged[1] == wheel.data[-10:]


def test_a_tampered_file_is_never_served_whole_nor_kept(proxy, fake_upstream, tmp_path) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    fake_upstream.tamper.add(wheel.filename)
    app = proxy()
    live, running = start_server(app, app.extensions["teamindex"].settings)
    try:
        for _attempt in range(2):  # never kept: the second download asks upstream again
            status, body, complete = raw_get(live.url, f"/files/six/{wheel.filename}")
            assert status == 200  # the stream started before the last byte arrived...
            assert not complete  # ...and ends short of its Content-Length
            assert len(body) < len(wheel.data)
        assert fake_upstream.count(f"/files/{wheel.filename}") == 2
        assert app.extensions["teamindex"].upstream.files.status().files == 0
        # Verify-then-serve (HEAD, Range): a clean 502 instead.
        ranged = {"Range": "bytes=0-5"}
        status, _body, _complete = raw_get(live.url, f"/files/six/{wheel.filename}", ranged)
        assert status == 502
        status, _body, _complete = raw_get(live.url, f"/files/six/{wheel.filename}.metadata")
        assert status == 502
    finally:
        running.stop()


def raw_get(
    base: str, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> tuple[int, bytes, bool]:
    """(status, body, whether the body was as long as its Content-Length); `source`: the
    loopback address to send from (the server caps connections per address)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={**basic("alice"), **(headers or {})})
        response = connection.getresponse()
        try:
            body = response.read()
            return response.status, body, True
        except http.client.IncompleteRead as exc:
            return response.status, exc.partial, False
    finally:
        connection.close()


def test_cache_cap_evicts_least_recently_downloaded_and_refetches(
    proxy, fake_upstream, tmp_path
) -> None:
    a = fake_upstream.publish(tmp_path, "big-a", "1.0", padding=30_000)
    b = fake_upstream.publish(tmp_path, "big-b", "1.0", padding=30_000)
    app = proxy(upstream_cache_size=len(a.data) + len(b.data) // 2)
    client = app.test_client()
    assert get(client, f"/files/big-a/{a.filename}", basic("alice"))[1] == a.data
    assert get(client, f"/files/big-b/{b.filename}", basic("alice"))[1] == b.data
    assert app.extensions["teamindex"].upstream.files.status().files == 1  # a went
    assert get(client, f"/files/big-a/{a.filename}", basic("alice"))[1] == a.data
    assert fake_upstream.count(f"/files/{a.filename}") == 2
    assert fake_upstream.count(f"/files/{b.filename}") == 1


# -- freshness and failure ----------------------------------------------------------------------


def test_ttl_then_revalidation_with_etag(proxy, fake_upstream, tmp_path) -> None:
    fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy(upstream_ttl=3600)
    for _ in range(3):
        assert page(app, "six").status_code == 200
    assert fake_upstream.count("/simple/six/") == 1
    pages = app.extensions["teamindex"].upstream.pages
    pages.ttl = 0  # expire: the next request revalidates, upstream answers 304
    assert page(app, "six").status_code == 200
    assert fake_upstream.count("/simple/six/") == 2
    fake_upstream.publish(tmp_path, "six", "2.0")
    assert page(app, "six").get_json()["versions"] == ["1.0", "2.0"]


@pytest.mark.parametrize(("failure", "status"), [("error", 502), ("timeout", 504)])
def test_upstream_down_serves_the_last_good_copy_then_fails_clearly(
    failure: str, status: int, proxy, fake_upstream, tmp_path, monkeypatch
) -> None:
    fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy(upstream_ttl=0, upstream_stale_for=3600)
    assert page(app, "six").status_code == 200
    if failure == "error":
        fake_upstream.fail = 500
    else:
        import teamindex.upstream.client as client_module

        monkeypatch.setattr(client_module, "READ_TIMEOUT", 0.2)
        app = proxy_again(app, fake_upstream)
        fake_upstream.delay = 1.0
    assert filenames(page(app, "six")) == ["six-1.0-py3-none-any.whl"]
    app.extensions["teamindex"].upstream.pages.stale_for = 0
    refused = page(app, "six")
    assert refused.status_code == status
    assert "Upstream unavailable" in refused.status
    assert page(app, "never-seen").status_code == status


def test_during_an_outage_the_stale_copy_comes_from_memory_without_asking_upstream(
    proxy, fake_upstream, tmp_path
) -> None:
    """One failed refresh, then the hot path answers the stale page (byte for byte what
    Flask sends) and upstream is not asked again within the retry interval."""
    from test_hotpath import compare

    fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy(upstream_ttl=0, upstream_stale_for=3600)  # every request would revalidate
    headers = {**JSON, **basic("alice")}
    assert page(app, "six").status_code == 200
    fake_upstream.fail = 500
    assert filenames(page(app, "six")) == ["six-1.0-py3-none-any.whl"]  # one failed refresh
    asked = fake_upstream.count("/simple/six/")
    for _ in range(5):
        answered, (status, _headers, _body) = compare(app, "/simple/six/", headers)
        assert answered and status == "200 OK"
        assert filenames(page(app, "six")) == ["six-1.0-py3-none-any.whl"]
    assert fake_upstream.count("/simple/six/") == asked == 2


def proxy_again(app: Flask, fake: FakeUpstream) -> Flask:
    """A fresh Upstream for the same data dir (picks up a patched timeout)."""
    from teamindex.upstream import Upstream

    services = app.extensions["teamindex"]
    object.__setattr__(services, "upstream", Upstream(services.settings, services.db))
    return app


def test_offline_serves_only_what_is_cached(make_app, fake_upstream, tmp_path) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    online = make_app(upstream=fake_upstream.url)
    assert page(online, "six").status_code == 200
    get(online.test_client(), f"/files/six/{wheel.filename}", basic("alice"))
    seen = len(fake_upstream.seen)
    offline = proxy_again_with(online, offline=True, upstream_ttl=0)
    assert filenames(page(offline, "six")) == [wheel.filename]
    got = get(offline.test_client(), f"/files/six/{wheel.filename}", basic("alice"))
    assert got[1] == wheel.data
    assert page(offline, "other").status_code == 503
    assert len(fake_upstream.seen) == seen


def proxy_again_with(app: Flask, **changes: object) -> Flask:
    from dataclasses import replace

    from teamindex.upstream import Upstream

    services = app.extensions["teamindex"]
    settings = replace(services.settings, **changes)
    object.__setattr__(services, "upstream", Upstream(settings, services.db))
    return app


def test_fifty_concurrent_cold_requests_make_one_upstream_fetch(
    proxy, fake_upstream, tmp_path
) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    fake_upstream.delay = 0.3
    app = proxy(threads=16)
    live, running = start_server(app, app.extensions["teamindex"].settings)
    results: list[int] = []
    lock = threading.Lock()

    def fetch(path: str, number: int) -> None:
        status, _body, _complete = raw_get(live.url, path, JSON, f"127.0.0.{2 + number % 8}")
        with lock:
            results.append(status)

    try:
        threads = [threading.Thread(target=fetch, args=("/simple/six/", n)) for n in range(50)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [200] * 50
        assert fake_upstream.count("/simple/six/") == 1
        assert time.monotonic() - started < 30
        results.clear()
        threads = [
            threading.Thread(target=fetch, args=(f"/files/six/{wheel.filename}", n))
            for n in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [200] * 20
        assert fake_upstream.count(f"/files/{wheel.filename}") == 1
        upstream = app.extensions["teamindex"].upstream  # the per-key locks were let go
        assert (len(upstream.pages._locks), len(upstream.files.locks)) == (0, 0)
    finally:
        running.stop()


# -- access -----------------------------------------------------------------------------------


def test_reading_upstream_projects_needs_the_same_rights(proxy, fake_upstream, tmp_path) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy()
    client = app.test_client()
    file_url = f"/files/six/{wheel.filename}"
    assert client.get("/simple/six/", headers=JSON).status_code == 401
    assert client.get(file_url).status_code == 401
    wrong = basic("alice", "wrong")["Authorization"]
    assert page(app, "six", "alice", Authorization=wrong).status_code == 401
    _id, other = add_token(app, "alice", scope="read", projects=["team-*"])
    token = basic("__token__", other)
    assert client.get("/simple/six/", headers={**JSON, **token}).status_code == 404
    assert client.get(file_url, headers=token).status_code == 404
    assert fake_upstream.count("six") == 0  # refused before upstream hears the name
    _id, covering = add_token(app, "alice", scope="read", projects=["six"])
    covered = client.get("/simple/six/", headers={**JSON, **basic("__token__", covering)})
    assert covered.status_code == 200
    assert get(client, file_url, basic("__token__", covering))[1] == wheel.data


def test_anonymous_read_applies_to_upstream_projects(proxy, fake_upstream, tmp_path) -> None:
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    anonymous = proxy(anonymous_read=True).test_client()
    assert anonymous.get("/simple/six/", headers=JSON).status_code == 200
    assert get(anonymous, f"/files/six/{wheel.filename}", {})[1] == wheel.data


# -- origin control on upload -------------------------------------------------------------------


def test_upload_of_a_name_upstream_has_needs_a_claim(proxy, fake_upstream, tmp_path) -> None:
    fake_upstream.publish(tmp_path / "up", "requests", "2.0")
    app = proxy()
    wheel = make_wheel(tmp_path, "requests", "99.0")
    refused = upload(app.test_client(), wheel, "alice")
    assert refused.status_code == 403
    assert "teamindex project create requests" in refused.status
    db = app.extensions["teamindex"].db
    app.extensions["teamindex"].db.create_project("requests", "requests", "team", "now")
    db.set_role(db.get_user("alice").id, db.get_project("requests").id, "owner")
    assert upload(app.test_client(), wheel, "alice").status_code == 200
    events = [(e.action, e.outcome, e.detail) for e in db.query_audit(since="", project="requests")]
    assert events == [
        ("upload", "denied", "name exists upstream and is not claimed here"),
        ("upload", "stored", ""),
    ]


def test_upload_of_a_new_private_name_is_allowed(proxy, fake_upstream, tmp_path) -> None:
    app = proxy()
    fresh = make_wheel(tmp_path, "team-new", "1.0")
    assert upload(app.test_client(), fresh, "alice").status_code == 200
    protect(app, "acme-*")
    private = make_wheel(tmp_path, "acme-new", "1.0")
    assert upload(app.test_client(), private, "alice").status_code == 200
    assert fake_upstream.count("acme") == 0


def test_upload_when_upstream_cannot_say_is_503(proxy, fake_upstream, tmp_path) -> None:
    fake_upstream.fail = 500
    response = upload(proxy().test_client(), make_wheel(tmp_path, "team-x", "1.0"), "alice")
    assert response.status_code == 503
    assert "project create" in response.status


def test_no_upstream_no_change(app, tmp_path) -> None:
    assert app.extensions["teamindex"].upstream is None
    assert not (Path(app.extensions["teamindex"].settings.data_dir) / "upstream").exists()
    _ = json  # the module is used by other tests


# -- the commands -----------------------------------------------------------------------------


def cli_run(app: Flask, capsys, *args: str) -> tuple[int, str]:
    from teamindex import cli

    data_dir = app.extensions["teamindex"].settings.data_dir
    code = cli.main([*args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out + err


def test_protect_project_set_and_cache_commands_take_effect_and_are_audited(
    proxy, fake_upstream, tmp_path, capsys
) -> None:
    young = fake_upstream.publish(tmp_path, "acme-lib", "1.0", age=timedelta(hours=1))
    app = proxy()
    assert cli_run(app, capsys, "protect", "Acme-*")[0] == 0
    assert cli_run(app, capsys, "protect", "list") == (0, "acme-*\n")
    assert page(app, "acme-lib").status_code == 404
    assert fake_upstream.count("acme") == 0
    assert cli_run(app, capsys, "project", "set", "acme-lib", "--upstream", "allow")[0] == 0
    assert filenames(page(app, "acme-lib")) == []  # mixed now, but the file is too young
    assert cli_run(app, capsys, "project", "set", "acme-lib", "--min-age", "0")[0] == 0
    assert filenames(page(app, "acme-lib")) == [young.filename]
    get(app.test_client(), f"/files/acme-lib/{young.filename}", basic("alice"))
    code, out = cli_run(app, capsys, "cache", "status")
    assert code == 0 and "files   1" in out
    assert cli_run(app, capsys, "cache", "prune", "--all")[0] == 0
    assert "files   0" in cli_run(app, capsys, "cache", "status")[1]
    assert cli_run(app, capsys, "protect", "remove", "acme-*")[0] == 0
    code, out = cli_run(app, capsys, "protect", "remove", "acme-*")
    assert code == 1 and "not protected" in out
    code, out = cli_run(app, capsys, "project", "set", "acme-lib", "--min-age", "soon")
    assert code == 1 and "not a duration" in out
    db = app.extensions["teamindex"].db
    actions = [(e.action, e.detail) for e in db.query_audit(since="")]
    assert ("protect_add", "acme-*") in actions
    assert ("protect_remove", "acme-*") in actions
    assert ("project_set", "upstream=allow") in actions
    assert ("project_set", "min-age=0") in actions
    assert any(action == "cache_prune" for action, _detail in actions)


def test_backup_and_restore_carry_the_origin_controls(
    proxy, fake_upstream, tmp_path, capsys
) -> None:
    """The rules are rows of the database (migration 0007), so a restored index keeps
    protecting the team's names from the first request on."""
    from teamindex.app import create_app

    fake_upstream.publish(tmp_path / "up", "acme-lib", "9.0")
    app = proxy()
    assert cli_run(app, capsys, "protect", "acme-*")[0] == 0
    assert cli_run(app, capsys, "project", "set", "six", "--min-age", "0")[0] == 0
    assert cli_run(app, capsys, "backup", str(tmp_path / "backup"))[0] == 0
    restored = tmp_path / "restored"
    from teamindex import cli

    assert cli.main(["restore", str(tmp_path / "backup"), "--data-dir", str(restored)]) == 0
    capsys.readouterr()
    settings = app.extensions["teamindex"].settings
    twin = create_app(settings.__class__(**{**settings.__dict__, "data_dir": restored}))
    rules = twin.extensions["teamindex"].upstream.rules.current()
    assert rules.protected == ("acme-*",)
    assert rules.rule("six").min_age == timedelta(0)
    assert page(twin, "acme-lib").status_code == 404
    assert fake_upstream.count("acme") == 0


# -- rendered once: warm proxied pages ----------------------------------------------------------


def test_a_warm_proxied_page_renders_nothing_and_the_hot_path_answers_it(
    proxy, fake_upstream, tmp_path
) -> None:
    """Like a local page: built once per (upstream copy, local serial, rules, cooldown mark),
    then answered from memory by the hot path, byte for byte what Flask sends."""
    from test_hotpath import compare

    fake_upstream.publish(tmp_path / "up", "six", "1.0")
    fake_upstream.publish(tmp_path / "up", "forked", "1.0")
    app = proxy(upstream_ttl=3600)
    app.extensions["teamindex"].db.set_protected("forked", True)
    upload(app.test_client(), make_wheel(tmp_path, "forked", "1.0.post1"), "alice")
    set_rule(app, "forked", mode="allow")
    pages = app.extensions["teamindex"].pages
    for name in ("six", "forked"):
        for accept in (JSON_TYPE, "text/html"):
            headers = {"Accept": accept, **basic("alice")}
            assert page(app, name, **headers).status_code == 200  # builds it
            built = pages.builds
            for _ in range(3):
                answered, (status, _headers, _body) = compare(app, f"/simple/{name}/", headers)
                assert answered and status == "200 OK"
            gz = {**headers, "Accept-Encoding": "gzip"}
            assert compare(app, f"/simple/{name}/", gz)[0]
            assert pages.builds == built  # nothing rendered again
    assert page(app, "forked").get_json()["versions"] == ["1.0", "1.0.post1"]
    assert fake_upstream.count("/simple/six/") == 1
    # Who may not read it gets Flask's refusal, not the cached page.
    _id, narrow = add_token(app, "alice", scope="read", projects=["team-*"])
    answered, (status, _h, _b) = compare(
        app, "/simple/six/", {**JSON, **basic("__token__", narrow)}
    )
    assert not answered and status.startswith("404")


def test_a_cached_proxied_page_moves_with_everything_it_depends_on(
    proxy, fake_upstream, tmp_path, capsys
) -> None:
    """Rules changed by the CLI (another connection), a local upload into a mixed project,
    a new upstream copy, and a held-back file coming of age: each shows on the next request."""
    from test_hotpath import compare

    fake_upstream.publish(tmp_path / "up", "six", "1.0")
    young = fake_upstream.publish(tmp_path / "up", "six", "1.1", age=timedelta(0))
    app = proxy(upstream_ttl=3600, upstream_min_age=2)
    headers = {**JSON, **basic("alice")}
    assert page(app, "six").get_json()["versions"] == ["1.0"]
    # The cooldown boundary: 1.1 becomes visible by age alone, with nothing else changed.
    time.sleep(max(0.0, (young.upload_time + timedelta(seconds=2.05)).timestamp() - time.time()))
    assert page(app, "six").get_json()["versions"] == ["1.0", "1.1"]
    assert compare(app, "/simple/six/", headers)[0]
    # Rules from the CLI: protected now, so not upstream's; then mixed with a local fork.
    assert cli_run(app, capsys, "protect", "six")[0] == 0
    answered, (status, _h, _b) = compare(app, "/simple/six/", headers)
    assert not answered and status.startswith("404")
    upload(app.test_client(), make_wheel(tmp_path, "six", "1.1.post1"), "alice")
    assert page(app, "six").get_json()["versions"] == ["1.1.post1"]
    assert cli_run(app, capsys, "project", "set", "six", "--upstream", "allow")[0] == 0
    assert page(app, "six").get_json()["versions"] == ["1.0", "1.1", "1.1.post1"]
    upload(app.test_client(), make_wheel(tmp_path, "six", "1.2"), "alice")
    assert page(app, "six").get_json()["versions"] == ["1.0", "1.1", "1.1.post1", "1.2"]
    assert compare(app, "/simple/six/", headers)[0]
    # A new upstream copy: past the TTL the hot path leaves it to Flask, which revalidates.
    fake_upstream.publish(tmp_path / "up", "six", "2.0")
    app.extensions["teamindex"].upstream.pages.ttl = 0
    assert not compare(app, "/simple/six/", headers)[0]
    assert page(app, "six").get_json()["versions"][-1] == "2.0"


# -- visible: metrics -----------------------------------------------------------------------


def test_metrics_count_upstream_requests_hits_misses_errors_bytes_and_the_cache(
    proxy, fake_upstream, tmp_path
) -> None:
    from test_ops_observability import scrape

    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    tampered = fake_upstream.publish(tmp_path, "bad", "1.0")
    fake_upstream.tamper.add(tampered.filename)
    app = proxy(upstream_ttl=3600)
    client = app.test_client()
    for _ in range(3):
        assert page(app, "six").status_code == 200  # 1 miss, then hits (hot path too)
    for _ in range(2):
        assert get(client, f"/files/six/{wheel.filename}", basic("alice"))[1] == wheel.data
    get(client, f"/files/six/{wheel.filename}.metadata", basic("alice"))
    page(app, "bad")
    get(client, f"/files/bad/{tampered.filename}", basic("alice"))
    found = scrape(client)

    def value(name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("teamindex_upstream_requests_total", kind="page") == 2
    assert value("teamindex_upstream_requests_total", kind="file") == 2
    assert value("teamindex_upstream_requests_total", kind="metadata") == 1
    assert value("teamindex_upstream_page_total", result="miss") == 2
    assert value("teamindex_upstream_page_total", result="hit") >= 2
    assert value("teamindex_upstream_file_total", result="hit") == 1
    assert value("teamindex_upstream_file_total", result="miss") == 2
    assert value("teamindex_upstream_errors_total", kind="mismatch") == 1
    assert value("teamindex_upstream_bytes_total", kind="file") == len(wheel.data) + len(
        tampered.data
    )
    assert value("teamindex_upstream_cache_files") == 2  # the wheel and its .metadata
    assert value("teamindex_upstream_cache_bytes") == len(wheel.data) + len(wheel.metadata)
    fake_upstream.fail = 500
    app.extensions["teamindex"].upstream.pages.stale_for = 0
    assert page(app, "other").status_code == 502
    assert scrape(client)[("teamindex_upstream_errors_total", (("kind", "page"),))] == 1


def test_the_first_download_while_fetched_has_the_stored_copys_headers(
    proxy, fake_upstream, tmp_path
) -> None:
    """Relayed while fetched (first GET) or sent from the cache (later): the same headers,
    but for Accept-Ranges, which only the stored copy can honour."""
    wheel = fake_upstream.publish(tmp_path, "six", "1.0")
    client = proxy().test_client()
    url = f"/files/six/{wheel.filename}"
    first = get(client, url, basic("alice"))
    again = get(client, url, basic("alice"))
    assert fake_upstream.count(f"/files/{wheel.filename}") == 1  # the first was the fetch
    assert first[:2] == again[:2] == (200, wheel.data)
    assert "Accept-Ranges" not in first[2] and again[2].pop("Accept-Ranges") == "bytes"
    again[2].pop("Date")  # send_file's conditional answer dates itself; waitress dates both
    assert first[2] == again[2]
    assert first[2]["Content-Disposition"] == f"inline; filename={wheel.filename}"
