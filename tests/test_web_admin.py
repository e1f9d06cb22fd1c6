"""/admin/: only for administrators; every change audited; destructive ones confirmed."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, basic
from web_support import login, post_form, seed

from teamindex.clock import utc_now


def _db(app):
    return app.extensions["teamindex"].db


@pytest.fixture
def admin(app, client, tmp_path):
    seed(app, client, tmp_path / "dists")
    login(client, "root")
    return client


def _audit(app, action):
    return [
        (e.user, e.ip, e.project, e.filename, e.detail)
        for e in _db(app).query_audit(since="2000", action=action)
    ]


ADMIN_PAGES = [
    "/admin/",
    "/admin/users",
    "/admin/grants",
    "/admin/allowlists",
    "/admin/audit",
    "/admin/project/team-demo/",
]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_render_for_admins(admin, url):
    response = admin.get(url)
    assert response.status_code == 200, response.status
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_are_forbidden_to_users(app, client, url):
    login(client, "alice")
    assert client.get(url).status_code == 403
    assert client.get(url, headers=basic("bob")).status_code == 403


def test_admin_forms_are_forbidden_to_users(app, client):
    login(client, "alice")
    response = post_form(client, "/admin/users", {"name": "mallory", "password": "x" * 12})
    assert response.status_code == 403
    assert _db(app).get_user("mallory") is None


def test_admin_link_only_for_admins(admin, app):
    assert 'href="/admin/"' in admin.get("/").get_data(as_text=True)
    other = app.test_client()
    login(other, "alice")
    assert 'href="/admin/"' not in other.get("/").get_data(as_text=True)


def test_add_user_make_admin_and_delete_with_confirmation(admin, app):
    response = post_form(
        admin, "/admin/users", {"name": "carol", "password": "carol-password", "admin": ""}
    )
    assert response.status_code == 303
    assert "Added user carol." in admin.get("/admin/users").get_data(as_text=True)
    assert admin.get("/", headers=basic("carol", "carol-password")).status_code == 200
    assert post_form(admin, "/admin/users/carol/admin", {"admin": "yes"}).status_code == 303
    assert _db(app).get_user("carol").is_admin
    # Deleting asks first: the first POST only renders the confirmation page.
    asking = post_form(admin, "/admin/users/carol/delete")
    assert asking.status_code == 200
    assert "Delete user carol?" in asking.get_data(as_text=True)
    assert 'name="confirmed" value="yes"' in asking.get_data(as_text=True)
    assert _db(app).get_user("carol") is not None
    done = post_form(admin, "/admin/users/carol/delete", {"confirmed": "yes"})
    assert done.status_code == 303
    assert _db(app).get_user("carol") is None
    assert _audit(app, "user_add") == [("root", "127.0.0.1", "", "", "carol")]
    assert _audit(app, "user_admin") == [("root", "127.0.0.1", "", "", "carol admin=yes")]
    assert _audit(app, "user_delete") == [("root", "127.0.0.1", "", "", "carol")]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        ({"name": "alice", "password": "long-enough-pw"}, 409),
        ({"name": "bad name!", "password": "long-enough-pw"}, 400),
        ({"name": "dave", "password": "short"}, 400),
    ],
)
def test_add_user_refusals(admin, data, status):
    assert post_form(admin, "/admin/users", data).status_code == status


def test_admin_cannot_lock_themselves_out(admin, app):
    assert post_form(admin, "/admin/users/root/admin", {"admin": "no"}).status_code == 400
    assert post_form(admin, "/admin/users/root/delete", {"confirmed": "yes"}).status_code == 400
    assert _db(app).get_user("root").is_admin


def test_grant_and_revoke(admin, app):
    response = post_form(
        admin, "/admin/grants", {"project": "Secret.Proj", "user": "alice", "role": "reader"}
    )
    assert response.status_code == 303
    alice = app.test_client()
    login(alice, "alice")
    assert alice.get("/project/secret-proj/").status_code == 200
    assert "alice" in admin.get("/admin/grants").get_data(as_text=True)
    response = post_form(admin, "/admin/grants/revoke", {"project": "secret-proj", "user": "alice"})
    assert response.status_code == 303
    assert alice.get("/project/secret-proj/").status_code == 404
    assert _audit(app, "grant") == [("root", "127.0.0.1", "secret-proj", "", "alice reader")]
    assert _audit(app, "revoke") == [("root", "127.0.0.1", "secret-proj", "", "alice")]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        ({"project": "nope", "user": "alice", "role": "reader"}, 404),
        ({"project": "team-demo", "user": "nobody", "role": "reader"}, 404),
        ({"project": "team-demo", "user": "alice", "role": "god"}, 400),
    ],
)
def test_grant_refusals(admin, data, status):
    assert post_form(admin, "/admin/grants", data).status_code == status


def test_allowlists_global_and_per_user(admin, app):
    response = post_form(admin, "/admin/allowlists", {"cidr": "127.0.0.0/8", "note": "local"})
    assert response.status_code == 303
    response = post_form(admin, "/admin/allowlists", {"cidr": "10.1.2.3", "user": "bob"})
    assert response.status_code == 303
    assert _db(app).allowlist(None) == ["127.0.0.0/8"]
    assert _db(app).allowlist(_db(app).get_user("bob").id) == ["10.1.2.3/32"]
    page = admin.get("/admin/allowlists").get_data(as_text=True)
    assert "10.1.2.3/32" in page and "local" in page
    # bob is now confined to 10.1.2.3: from 127.0.0.1 he is refused, with the answer a wrong
    # password gets (so the list is no password oracle).
    assert admin.get("/simple/", headers=basic("bob")).status_code == 401
    response = post_form(admin, "/admin/allowlists/remove", {"cidr": "10.1.2.3/32", "user": "bob"})
    assert response.status_code == 303
    assert admin.get("/simple/", headers=basic("bob")).status_code == 200
    assert [d for *_rest, d in _audit(app, "allow_add")] == [
        "global 127.0.0.0/8",
        "user bob 10.1.2.3/32",
    ]
    assert [d for *_rest, d in _audit(app, "allow_remove")] == ["user bob 10.1.2.3/32"]


def test_allowlist_refuses_to_lock_out_the_admin(admin, app):
    response = post_form(admin, "/admin/allowlists", {"cidr": "10.0.0.0/8"})
    assert response.status_code == 400
    assert "would not be allowed" in response.get_data(as_text=True)
    assert _db(app).allowlist(None) == []
    response = post_form(admin, "/admin/allowlists", {"cidr": "not-a-cidr"})
    assert response.status_code == 400
    _db(app).add_allow("127.0.0.1/32", None, "", utc_now())
    _db(app).add_allow("10.0.0.0/8", None, "", utc_now())
    response = post_form(admin, "/admin/allowlists/remove", {"cidr": "127.0.0.1/32"})
    assert response.status_code == 400


def test_audit_view_filters(admin, app):
    post_form(admin, "/admin/grants", {"project": "team-demo", "user": "bob", "role": "maintainer"})
    body = admin.get("/admin/audit").get_data(as_text=True)
    assert "<td>grant</td>" in body and "<td>upload</td>" in body
    body = admin.get("/admin/audit", query_string={"action": "grant"}).get_data(as_text=True)
    assert "<td>grant</td>" in body and "<td>upload</td>" not in body
    body = admin.get("/admin/audit", query_string={"user": "bob"}).get_data(as_text=True)
    assert "<td>bob</td>" in body and "<td>alice</td>" not in body
    body = admin.get("/admin/audit", query_string={"project": "Other.Lib"}).get_data(as_text=True)
    assert "other-lib" in body and "team_demo-1.0" not in body
    body = admin.get("/admin/audit", query_string={"since": "2999-01-01"}).get_data(as_text=True)
    assert "No events match." in body
    assert admin.get("/admin/audit", query_string={"since": "soon"}).status_code == 400


def test_yank_and_unyank_with_confirmation(admin, app):
    asking = post_form(
        admin, "/admin/project/team-demo/yank", {"version": "1.1", "reason": "broken build"}
    )
    assert asking.status_code == 200
    body = asking.get_data(as_text=True)
    assert "Yank team-demo 1.1?" in body and "broken build" in body
    assert not any(f.yanked for f in _db(app).project_files(_db(app).get_project("team-demo")))
    done = post_form(
        admin,
        "/admin/project/team-demo/yank",
        {"version": "1.1", "reason": "broken build", "confirmed": "yes"},
    )
    assert done.status_code == 303
    files = _db(app).project_files(_db(app).get_project("team-demo"))
    assert {f.version: (f.yanked, f.yanked_reason) for f in files}["1.1"] == (True, "broken build")
    simple = admin.get("/simple/team-demo/", headers=basic("alice")).get_data(as_text=True)
    assert 'data-yanked="broken build"' in simple  # the API follows at once
    done = post_form(
        admin, "/admin/project/team-demo/unyank", {"version": "1.1", "confirmed": "yes"}
    )
    assert done.status_code == 303
    assert not any(f.yanked for f in _db(app).project_files(_db(app).get_project("team-demo")))
    assert _audit(app, "yank") == [("root", "127.0.0.1", "team-demo", "", "1.1 broken build")]
    assert _audit(app, "unyank") == [("root", "127.0.0.1", "team-demo", "", "1.1")]
    missing = post_form(
        admin, "/admin/project/team-demo/yank", {"version": "9.9", "confirmed": "yes"}
    )
    assert missing.status_code == 404


def test_delete_file_version_and_project(admin, app, settings):
    packages = settings.data_dir / "packages"
    wheel = "team_demo-1.0-py3-none-any.whl"
    asking = post_form(admin, "/admin/project/team-demo/delete", {"filename": wheel})
    assert asking.status_code == 200
    assert wheel in asking.get_data(as_text=True)
    assert (packages / "team-demo" / wheel).exists()
    done = post_form(
        admin, "/admin/project/team-demo/delete", {"filename": wheel, "confirmed": "yes"}
    )
    assert done.status_code == 303
    assert not (packages / "team-demo" / wheel).exists()
    done = post_form(
        admin, "/admin/project/team-demo/delete", {"version": "2.0rc1", "confirmed": "yes"}
    )
    assert done.status_code == 303
    versions = {f.version for f in _db(app).project_files(_db(app).get_project("team-demo"))}
    assert versions == {"1.1"}
    done = post_form(admin, "/admin/project/team-demo/delete", {"confirmed": "yes"})
    assert done.status_code == 303
    assert done.headers["Location"] == "/admin/"
    assert _db(app).get_project("team-demo") is None
    assert admin.get("/project/team-demo/").status_code == 404
    details = [d for *_rest, d in _audit(app, "delete")]
    assert details == [
        f"team-demo {wheel}: 1 file(s)",
        "team-demo 2.0rc1: 1 file(s)",
        "team-demo: 1 file(s)",
    ]
    nothing = post_form(
        admin, "/admin/project/other-lib/delete", {"version": "7.0", "confirmed": "yes"}
    )
    assert nothing.status_code == 404


def test_visibility_toggle(admin, app):
    response = post_form(admin, "/admin/project/team-demo/visibility", {"visibility": "restricted"})
    assert response.status_code == 303
    bob = app.test_client()
    login(bob, "bob", PASSWORD)
    assert bob.get("/project/team-demo/").status_code == 404
    assert _audit(app, "project_set") == [
        ("root", "127.0.0.1", "team-demo", "", "visibility=restricted")
    ]
