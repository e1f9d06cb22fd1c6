"""Hosted docs: zip rules (pure), upload over HTTP and the CLI, serving behind permissions."""

from __future__ import annotations

import http.client
import io
import logging
import os
import stat
import threading
import time
import zipfile
from pathlib import PurePosixPath

import pytest
from builders import claim_zip_directory
from conftest import add_token, add_user, basic, start_server
from uploading import encode_multipart
from web_support import docs_zip, login, seed

from teamindex.cli import main
from teamindex.index.docs import (
    DocsError,
    DocsLimits,
    ZipEntry,
    common_root,
    plan_extraction,
    safe_relative_path,
)
from teamindex.index.storage import local as storage_module
from teamindex.web.hosting import DOCS_CSP, capability

# -- pure rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil.html", "'..'"),
        ("docs/../../evil.html", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/evil.html", "drive letter"),
        ("c:evil.html", "drive letter"),
        ("docs\\..\\evil.html", "backslash"),
        ("a//b.html", "'//'"),
        ("./index.html", "'.'"),
        ("a/\x00b", "control character"),
        ("", "empty"),
        ("/", "empty"),
        ("x" * 300, "longer than 255"),
        ("a/" * 600 + "b", "longer than 1024"),
    ],
)
def test_unsafe_paths_are_refused(name, problem):
    with pytest.raises(DocsError, match=problem):
        safe_relative_path(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("index.html", "index.html"),
        ("a/b/c.css", "a/b/c.css"),
        ("dir/", "dir"),
        ("ü.html", "ü.html"),
    ],
)
def test_safe_paths(name, expected):
    assert safe_relative_path(name) == PurePosixPath(expected)


def _entry(name, size=10, compressed=10, mode=stat.S_IFREG | 0o644, encrypted=False):
    return ZipEntry(name, size, compressed, mode, encrypted)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([_entry("index.html"), _entry("link", mode=stat.S_IFLNK | 0o777)], "symbolic link"),
        ([_entry("index.html"), _entry("fifo", mode=stat.S_IFIFO | 0o644)], "special file"),
        ([_entry("index.html", encrypted=True)], "encrypted"),
        ([_entry("index.html"), _entry("index.html")], "duplicate"),
        ([_entry("index.html"), _entry("a"), _entry("a/b")], "both a file and a directory"),
        ([_entry("index.html"), _entry("a/", mode=stat.S_IFDIR), _entry("a")], "both a file"),
        ([_entry("page.html")], "no index.html"),
        ([_entry("site/page.html")], "nor in 'site'"),
        ([], "no files"),
        ([_entry("index.html", size=5 << 20, compressed=1000)], "compresses more than"),
        ([_entry("index.html", size=65 << 20, compressed=65 << 20)], "the limit is"),
        ([_entry("index.html", size=-1)], "negative size"),
    ],
)
def test_bad_archives_are_refused(entries, problem):
    with pytest.raises(DocsError, match=problem):
        plan_extraction(entries)


def test_count_and_total_limits():
    limits = DocsLimits(max_entries=3, max_total_bytes=25)
    with pytest.raises(DocsError, match="4 entries"):
        plan_extraction([_entry(f"{i}.html") for i in range(3)] + [_entry("index.html")], limits)
    with pytest.raises(DocsError, match="more than 25 bytes"):
        plan_extraction([_entry("index.html"), _entry("a"), _entry("b")], limits)


def test_small_files_may_compress_well():
    # A 100 kB file of spaces compresses 1000:1; below ratio_floor that is no bomb.
    plan_extraction([_entry("index.html", size=100_000, compressed=100)])


def test_single_wrapping_folder_is_removed():
    members = plan_extraction(
        [
            _entry("build/html/", mode=stat.S_IFDIR),
            _entry("build/html/index.html"),
            _entry("build/html/_static/a.css"),
        ]
    )
    assert [str(m.target) for m in members] == ["index.html", "_static/a.css"]
    assert [m.name for m in members] == ["build/html/index.html", "build/html/_static/a.css"]


def test_common_root():
    paths = [PurePosixPath(p) for p in ("a/b/index.html", "a/b/c/d.css")]
    assert common_root(paths) == PurePosixPath("a/b")
    assert common_root([PurePosixPath("index.html")]) == PurePosixPath()
    assert common_root([PurePosixPath("a/x"), PurePosixPath("b/y")]) == PurePosixPath()


def test_zipinfo_conversion_sees_symlinks():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
        archive.writestr("index.html", "<h1>x</h1>")
    with zipfile.ZipFile(buffer) as archive:
        entries = [ZipEntry.from_zipinfo(i) for i in archive.infolist()]
    assert stat.S_ISLNK(entries[0].mode) and not stat.S_ISLNK(entries[1].mode)
    with pytest.raises(DocsError, match="symbolic link"):
        plan_extraction(entries)


# -- upload over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def seeded(app, client, tmp_path):
    seed(app, client, tmp_path / "dists")
    return client


def _db(app):
    return app.extensions["teamindex"].db


def _post(client, url, data, user="alice", **kwargs):
    return client.post(
        url, data=data, headers=basic(user), content_type="application/zip", **kwargs
    )


def _docs_root(settings):
    return settings.data_dir / "docs"


def test_upload_raw_body_and_read_it(seeded, app, settings):
    response = _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    assert response.status_code == 200, response.status
    assert "Published documentation for team-demo 1.1 (4 files)" in response.get_data(as_text=True)
    (build,) = _db(app).docs_builds(_db(app).get_project("team-demo").id)
    assert (build.version, build.files, build.uploader) == ("1.1", 4, "alice")
    site = _docs_root(settings) / "team-demo" / "1.1" / build.build
    assert (site / "index.html").is_file() and (site / "_static" / "site.css").is_file()
    assert not list((_docs_root(settings) / ".incoming").iterdir())
    events = _db(app).query_audit(since="2000", action="docs_upload")
    assert [(e.user, e.project, e.outcome) for e in events] == [("alice", "team-demo", "ok")]


def test_upload_multipart_field_content_with_token(seeded, app):
    _id, secret = add_token(app, "alice", scope="upload", projects=["team-*"], note="ci")
    body, content_type = encode_multipart([], ("docs.zip", docs_zip(), "application/zip"))
    response = seeded.post(
        "/docs/Team.Demo/1.1/",
        data=body,
        content_type=content_type,
        headers=basic("__token__", secret),
    )
    assert response.status_code == 200, response.status
    events = _db(app).query_audit(since="2000", action="docs_upload")
    assert events[0].token_id is not None


@pytest.mark.parametrize(
    ("user", "url", "status"),
    [
        (None, "/docs/team-demo/1.1/", 401),  # no credentials
        ("bob", "/docs/team-demo/1.1/", 403),  # no role in team-demo
        ("alice", "/docs/secret-proj/0.1/", 404),  # restricted, not hers: does not exist
        ("alice", "/docs/team-demo/9.9/", 404),  # no such release
        ("alice", "/docs/no-such/1.0/", 404),
        ("alice", "/docs/team-demo/not-a-version/", 400),
        ("root", "/docs/secret-proj/0.1/", 200),  # admins may
        ("bob", "/docs/secret-proj/0.1/", 200),  # owner
    ],
)
def test_upload_permissions(seeded, user, url, status):
    headers = basic(user) if user else {}
    response = seeded.post(url, data=docs_zip(), headers=headers, content_type="application/zip")
    assert response.status_code == status, response.status


def test_read_token_cannot_upload_docs(seeded, app):
    _id, secret = add_token(app, "alice", scope="read")
    response = seeded.post(
        "/docs/team-demo/1.1/", data=docs_zip(), headers=basic("__token__", secret)
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"this is not a zip", "not a valid zip"),
        (docs_zip({"../escape.html": "x", "index.html": "x"}), "'..'"),
        (docs_zip({"/abs.html": "x", "index.html": "x"}), "absolute path"),
        (docs_zip({"readme.txt": "no index"}), "no index.html"),
        (b"", "Empty body"),
    ],
)
def test_bad_zips_are_refused_and_leave_nothing(seeded, app, settings, data, problem):
    response = _post(seeded, "/docs/team-demo/1.1/", data)
    assert response.status_code == 400
    assert problem in response.get_data(as_text=True)
    assert _db(app).docs_builds(_db(app).get_project("team-demo").id) == []
    root = _docs_root(settings)
    assert not (root / "team-demo").exists()
    assert not (root / ".incoming").exists() or not list((root / ".incoming").iterdir())
    assert not (settings.data_dir.parent / "escape.html").exists()


def test_zip_bomb_is_refused(seeded):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", "<h1>x</h1>")
        archive.writestr("bomb.bin", b"\0" * (20 << 20))  # 20 MB -> ~20 kB
    response = _post(seeded, "/docs/team-demo/1.1/", buffer.getvalue())
    assert response.status_code == 400
    assert "zip bomb" in response.get_data(as_text=True)


def test_reupload_replaces_the_build_atomically(seeded, app, settings):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    (first,) = _db(app).docs_builds(_db(app).get_project("team-demo").id)
    _post(seeded, "/docs/team-demo/1.1/", docs_zip({"index.html": "<h1>Second</h1>"}))
    (second,) = _db(app).docs_builds(_db(app).get_project("team-demo").id)
    assert second.build != first.build and second.files == 1
    version_dir = _docs_root(settings) / "team-demo" / "1.1"
    assert [p.name for p in version_dir.iterdir()] == [second.build]


# -- reading ------------------------------------------------------------------------------------


def _follow(client, url, **kwargs):
    response = client.get(url, **kwargs)
    assert response.status_code == 302, response.status
    location = response.headers["Location"]
    assert location.startswith("/_docs/")
    return location, client.get(location)


def test_docs_are_served_through_a_capability_url(seeded, app):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    assert location.endswith("/team-demo/1.1/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert b"Demo docs" in page.data
    assert page.headers["Content-Security-Policy"] == DOCS_CSP
    assert "sandbox" in DOCS_CSP and "allow-same-origin" not in DOCS_CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in page.headers
    # Subresources work without any cookie: the capability is in the path.
    anonymous = app.test_client()
    css = anonymous.get(location + "_static/site.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    css.close()
    js = anonymous.get(location + "_static/site.js")
    assert js.mimetype == "text/javascript"
    js.close()
    page.close()


def test_latest_and_directory_pages(seeded, app):
    _post(seeded, "/docs/team-demo/1.0/", docs_zip({"index.html": "<h1>One oh</h1>"}))
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    location, page = _follow(seeded, "/docs/team-demo/latest/")
    assert "/team-demo/1.1/" in location and b"Demo docs" in page.data
    page.close()
    location, page = _follow(seeded, "/docs/team-demo/1.0/")
    assert b"One oh" in page.data
    page.close()
    location, _ = _follow(seeded, "/docs/team-demo/latest/guide")
    redirect = seeded.get(location)
    assert redirect.status_code == 301 and redirect.headers["Location"].endswith("/guide/")
    guide = seeded.get(redirect.headers["Location"])
    assert b"<h1>Guide</h1>" in guide.data
    guide.close()
    body = seeded.get("/project/team-demo/").get_data(as_text=True)
    assert 'href="/docs/team-demo/latest/"' in body and "Latest (1.1)" in body


def test_docs_need_a_viewer_and_follow_visibility(seeded, app):
    _post(seeded, "/docs/secret-proj/0.1/", docs_zip(), user="bob")
    anonymous = app.test_client()
    response = anonymous.get("/docs/secret-proj/0.1/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    alice = app.test_client()
    login(alice, "alice")
    assert alice.get("/docs/secret-proj/0.1/").status_code == 404
    assert alice.get("/docs/secret-proj/latest/").status_code == 404
    bob = app.test_client()
    login(bob, "bob")
    location, page = _follow(bob, "/docs/secret-proj/0.1/")
    page.close()
    # Bob's capability is for bob: once his role is gone, it opens nothing.
    project = _db(app).get_project("secret-proj")
    _db(app).remove_role(_db(app).get_user("bob").id, project.id)
    assert bob.get(location).status_code == 404


def test_forged_expired_and_moved_capabilities_start_over(seeded, app):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    _post(seeded, "/docs/team-demo/1.0/", docs_zip())
    login(seeded, "alice")
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    page.close()
    cap = location.split("/")[2]
    with app.test_request_context():
        alice = _db(app).get_user("alice")
        alice_id = alice.id
        expired = capability(alice, "team-demo", "1.1", now=time.time() - 20 * 60)
        root = capability(_db(app).get_user("root"), "team-demo", "1.1")
    swapped = f"{alice_id}." + root.split(".", 1)[1]  # root's signature, alice's id
    for bad in (
        f"/_docs/{cap[:-2]}xx/team-demo/1.1/",  # forged signature
        f"/_docs/{cap}/team-demo/1.0/",  # another version
        f"/_docs/{expired}/team-demo/1.1/",
        f"/_docs/{swapped}/team-demo/1.1/",
        "/_docs/garbage/team-demo/1.1/",
    ):
        response = app.test_client().get(bad)
        assert response.status_code == 302, bad
        assert response.headers["Location"].startswith("/docs/team-demo/")


def test_paths_outside_the_build_are_404(seeded, app):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    page.close()
    for path in ("../../../secret_key", "%2e%2e/%2e%2e/secret_key", "nope.html", "_static/../../x"):
        assert seeded.get(location + path).status_code in (404, 308), path


def test_missing_docs_are_404(seeded):
    login(seeded, "alice")
    assert seeded.get("/docs/team-demo/latest/").status_code == 404
    assert seeded.get("/docs/team-demo/1.1/").status_code == 404
    assert seeded.get("/docs/team-demo/bogus/").status_code == 404


def test_deleting_a_release_removes_its_docs(seeded, app, settings):
    _post(seeded, "/docs/team-demo/1.0/", docs_zip())
    login(seeded, "root")
    from web_support import post_form

    response = post_form(
        seeded, "/admin/project/team-demo/delete", {"version": "1.0", "confirmed": "yes"}
    )
    assert response.status_code == 303
    assert not (_docs_root(settings) / "team-demo" / "1.0").exists()
    assert _db(app).docs_builds(_db(app).get_project("team-demo").id) == []


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_upload_docs(seeded, app, settings, tmp_path, capsys):
    archive = tmp_path / "docs.zip"
    archive.write_bytes(docs_zip())
    status = main(
        ["upload-docs", "Team.Demo", "1.1", str(archive), "--data-dir", str(settings.data_dir)]
    )
    assert status == 0
    assert "published docs for team-demo 1.1: 4 files" in capsys.readouterr().out
    (build,) = _db(app).docs_builds(_db(app).get_project("team-demo").id)
    assert build.uploader == ""
    events = _db(app).query_audit(since="2000", action="docs_upload")
    assert events[0].user.startswith("cli")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "1.0"], "no project"),
        (["team-demo", "9.9"], "no release"),
        (["team-demo", "x.y.z"], "invalid version"),
    ],
)
def test_cli_upload_docs_refusals(seeded, settings, tmp_path, capsys, args, message):
    archive = tmp_path / "docs.zip"
    archive.write_bytes(docs_zip())
    assert main(["upload-docs", *args, str(archive), "--data-dir", str(settings.data_dir)]) == 1
    assert message in capsys.readouterr().err


def test_cli_upload_docs_bad_zip(seeded, settings, tmp_path, capsys):
    archive = tmp_path / "docs.zip"
    archive.write_bytes(docs_zip({"../x.html": "x", "index.html": "y"}))
    assert (
        main(
            ["upload-docs", "team-demo", "1.1", str(archive), "--data-dir", str(settings.data_dir)]
        )
        == 1
    )
    assert "invalid documentation zip" in capsys.readouterr().err


def test_upload_like_curl_data_binary(seeded, app):
    """curl --data-binary sends the form content type; the body is still the zip."""
    response = seeded.post(
        "/docs/team-demo/1.1/",
        data=docs_zip(),
        headers=basic("alice"),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.status


def test_capabilities_live_minutes_and_are_renewed_while_browsing(seeded, app):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    page.close()
    expires = int(location.split("/")[2].split(".")[1])
    assert 10 * 60 <= expires - time.time() <= 20 * 60 + 1  # minutes, not hours
    with app.test_request_context():
        alice = _db(app).get_user("alice")
        older = capability(alice, "team-demo", "1.1", now=time.time() - 10 * 60)
        # A signed capability claiming a long life (as they had before) opens nothing.
        lasting = capability(alice, "team-demo", "1.1", now=time.time() + 8 * 3600)
    anonymous = app.test_client()
    # One from the previous window still serves the site's files...
    css = anonymous.get(f"/_docs/{older}/team-demo/1.1/_static/site.css")
    assert css.status_code == 200
    css.close()
    # ...and a page opened with it moves to a fresh capability for the same page.
    moved = anonymous.get(f"/_docs/{older}/team-demo/1.1/guide/")
    assert moved.status_code == 302
    fresh = moved.headers["Location"]
    assert fresh.startswith("/_docs/") and fresh.endswith("/team-demo/1.1/guide/")
    assert older not in fresh
    guide = anonymous.get(fresh)
    assert guide.status_code == 200 and b"Guide" in guide.data
    guide.close()
    refused = anonymous.get(f"/_docs/{lasting}/team-demo/1.1/_static/site.css")
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/docs/team-demo/1.1/")


def test_capabilities_die_with_the_password_and_the_user(seeded, app):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    db = _db(app)
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    page.close()
    db.set_password("alice", "pbkdf2:sha256:1000$new$hash")
    assert app.test_client().get(location).status_code == 302
    bob = app.test_client()
    login(bob, "bob")
    location, page = _follow(bob, "/docs/team-demo/1.1/")
    page.close()
    db.delete_user("bob")
    add_user(app, "new-hire")
    response = app.test_client().get(location)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/docs/team-demo/1.1/")


def test_capabilities_stay_out_of_the_request_log(seeded, app, caplog):
    _post(seeded, "/docs/team-demo/1.1/", docs_zip())
    login(seeded, "alice")
    caplog.set_level(logging.INFO, logger="teamindex.access")
    location, page = _follow(seeded, "/docs/team-demo/1.1/")
    page.close()
    cap = location.split("/")[2]
    lines = [r.getMessage() for r in caplog.records if r.name == "teamindex.access"]
    assert any('"GET /_docs/-/team-demo/1.1/" 200' in line for line in lines), lines
    assert not any(cap in line for line in lines), lines


def test_raw_body_docs_zip_over_6_mib_on_a_real_server(seeded, app, settings):
    """Issue 10 (high 3): the README's `curl --data-binary @docs.zip` with a zip past the
    parallel-hashing size hung the worker forever; now it is answered within a bound."""
    big = docs_zip({"index.html": "<h1>Big</h1>", "blob.bin": os.urandom(7 << 20)})
    assert len(big) > 6 << 20
    live, running = start_server(app, settings)
    try:
        connection = http.client.HTTPConnection(live.host, timeout=30)
        started = time.monotonic()
        connection.request(
            "POST",
            "/docs/team-demo/1.1/",
            body=big,
            headers={**basic("alice"), "Content-Type": "application/zip"},
        )
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
    finally:
        running.stop()
    assert response.status == 200, body
    assert "Published documentation for team-demo 1.1 (2 files)" in body
    assert time.monotonic() - started < 30


def test_stuck_hashing_answers_503_quickly(seeded, app, settings, monkeypatch):
    """A hashing helper that stops keeping up fails the request (503), not the worker."""
    release = threading.Event()
    real_run = storage_module._HashHelper._run
    monkeypatch.setattr(storage_module, "HASH_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(
        storage_module._HashHelper, "_run", lambda self: (release.wait(30), real_run(self))
    )
    big = docs_zip({"index.html": "<h1>Big</h1>", "blob.bin": os.urandom(7 << 20)})
    started = time.monotonic()
    response = _post(seeded, "/docs/team-demo/1.1/", big)
    release.set()
    assert response.status_code == 503, response.status
    assert response.headers["Retry-After"]
    assert time.monotonic() - started < 10
    assert list((settings.data_dir / "tmp").glob("*.part")) == []


def test_docs_zip_claiming_a_million_entries_is_refused_unread(seeded, tmp_path):
    path = tmp_path / "docs.zip"
    path.write_bytes(docs_zip())
    claim_zip_directory(path, entries=1_000_000)
    response = _post(seeded, "/docs/team-demo/1.1/", path.read_bytes())
    assert response.status_code == 400
    assert "1000000 entries; the limit is 20000" in response.get_data(as_text=True)
