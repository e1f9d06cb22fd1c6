"""The web side of the upstream proxy (issue 13): project pages of upstream and mixed
projects under the read rules, and /admin/upstream editing the origin controls like the CLI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import make_wheel
from conftest import add_token, basic
from flask import Flask
from uploading import upload
from upstream_support import JSON_TYPE, FakeUpstream
from web_support import csrf_of, login, post_form

from teamindex.upstream.policy import Mode


def rules_db(app: Flask):
    return app.extensions["teamindex"].db


def no_rules(app: Flask) -> bool:
    stored = rules_db(app).upstream_rules()
    return stored.protected == () and stored.projects == ()


def _audit(app: Flask, action: str) -> list[tuple]:
    db = app.extensions["teamindex"].db
    return [(e.user, e.project, e.detail) for e in db.query_audit(since="2000", action=action)]


def simple(app: Flask, name: str) -> list[str]:
    response = app.test_client().get(
        f"/simple/{name}/", headers={"Accept": JSON_TYPE, **basic("alice")}
    )
    if response.status_code != 200:
        return [str(response.status_code)]
    return sorted(f["filename"] for f in response.get_json()["files"])


# -- the project page -------------------------------------------------------------------------


def test_an_upstream_project_has_a_page_with_what_the_viewer_may_install(
    proxy, fake_upstream, tmp_path
) -> None:
    old = fake_upstream.publish(tmp_path, "Six", "1.16.0")
    young = fake_upstream.publish(tmp_path, "six", "1.17.0", age=timedelta(hours=1))
    app = proxy()
    client = app.test_client()
    login(client, "alice")
    response = client.get("/project/six/")
    assert response.status_code == 200, response.status
    body = response.get_data(as_text=True)
    assert "from upstream" in body
    assert old.filename in body and old.sha256 in body
    assert f'href="/files/six/{old.filename}"' in body  # this index's URL, never upstream's
    assert young.filename not in body and "1.17.0" not in body  # the cooldown applies
    assert "1 file(s) are held back" in body
    assert "127.0.0.1" not in body
    download = client.get(f"/files/six/{old.filename}")
    assert download.status_code == 200 and download.get_data() == old.data
    download.close()
    # An exemption takes effect on the next page view.
    rules_db(app).set_upstream_rule("six", {"min_age": 0})
    assert young.filename in client.get("/project/six/").get_data(as_text=True)


def test_a_name_upstream_does_not_have_is_still_404(proxy, fake_upstream) -> None:
    client = proxy().test_client()
    login(client, "alice")
    assert client.get("/project/nothing-here/").status_code == 404


@pytest.mark.parametrize("how", ["reserved", "protected", "denied", "restricted-mixed"])
def test_private_names_are_never_looked_up_upstream_from_the_web(
    how: str, proxy, fake_upstream, tmp_path
) -> None:
    fake_upstream.publish(tmp_path / "up", "acme-utils", "99.0")
    app = proxy()
    db = app.extensions["teamindex"].db
    if how == "reserved":
        db.create_project("acme-utils", "acme-utils", "team", "now")
    elif how == "protected":
        rules_db(app).set_protected("acme-*", True)
    elif how == "denied":
        rules_db(app).set_upstream_rule("acme-utils", {"mode": Mode.DENY.value})
    else:  # mixing allowed, but restricted: bob (no role) must not make it go upstream
        db.create_project("acme-utils", "acme-utils", "restricted", "now")
        rules_db(app).set_upstream_rule("acme-utils", {"mode": Mode.ALLOW.value})
    client = app.test_client()
    login(client, "bob")
    response = client.get("/project/acme-utils/")
    body = response.get_data(as_text=True)
    if how == "reserved":
        assert response.status_code == 200 and "Private" in body and "99.0" not in body
    else:
        assert response.status_code == 404
    assert fake_upstream.count("acme") == 0


def test_a_token_for_other_projects_sends_nothing_upstream(proxy, fake_upstream, tmp_path):
    fake_upstream.publish(tmp_path, "six", "1.0")
    app = proxy()
    _id, secret = add_token(app, "alice", scope="read", projects=["other"])
    response = app.test_client().get("/project/six/", headers=basic("__token__", secret))
    assert response.status_code == 404
    assert fake_upstream.count("six") == 0
    _id, allowed = add_token(app, "alice", scope="read", projects=["six"])
    response = app.test_client().get("/project/six/", headers=basic("__token__", allowed))
    assert response.status_code == 200


@pytest.mark.parametrize("anonymous_read", [False, True])
def test_anonymous_reads_upstream_pages_only_where_anonymous_read_is_on(
    anonymous_read: bool, proxy, fake_upstream, tmp_path
) -> None:
    fake_upstream.publish(tmp_path, "six", "1.0")
    response = proxy(anonymous_read=anonymous_read).test_client().get("/project/six/")
    if anonymous_read:
        assert response.status_code == 200
    else:
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        assert fake_upstream.count("six") == 0


def test_local_pages_say_private_or_mixed(proxy, fake_upstream, tmp_path) -> None:
    public = fake_upstream.publish(tmp_path / "up", "patched", "1.0")
    app = proxy()
    rules_db(app).set_protected("patched", True)
    assert (
        upload(app.test_client(), make_wheel(tmp_path, "patched", "2.0"), "alice").status_code
        == 200
    )
    client = app.test_client()
    login(client, "alice")
    body = client.get("/project/patched/").get_data(as_text=True)
    assert "Private: this name is never looked up upstream" in body
    assert public.filename not in body and fake_upstream.count("patched") == 0
    rules_db(app).set_upstream_rule("patched", {"mode": Mode.ALLOW.value})
    body = client.get("/project/patched/").get_data(as_text=True)
    assert "mixes upstream files" in body and "Files from upstream" in body
    assert public.filename in body and "patched-2.0-py3-none-any.whl" in body
    fake_upstream.fail = 502  # a failing upstream leaves the local page up, and says so
    pages = app.extensions["teamindex"].upstream.pages
    pages.ttl = pages.stale_for = 0  # no fresh nor stale copy left
    response = client.get("/project/patched/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "patched-2.0-py3-none-any.whl" in body
    assert "cannot be listed now" in body


def test_pages_without_an_upstream_say_nothing_about_origins(app, client, tmp_path) -> None:
    assert upload(client, make_wheel(tmp_path, "plain", "1.0"), "alice").status_code == 200
    login(client, "alice")
    body = client.get("/project/plain/").get_data(as_text=True)
    assert "Private: this name" not in body and "upstream" not in body.lower()


# -- /admin/upstream --------------------------------------------------------------------------


def _young_six(fake_upstream: FakeUpstream, tmp_path) -> str:
    fake_upstream.publish(tmp_path, "six", "1.0")
    return fake_upstream.publish(tmp_path, "six", "2.0", age=timedelta(hours=1)).filename


def test_admin_edits_origin_controls_audited_like_the_cli_next_request(
    proxy, fake_upstream, tmp_path
) -> None:
    young = _young_six(fake_upstream, tmp_path)
    fake_upstream.publish(tmp_path, "acme-utils", "99.0")
    app = proxy()
    app.extensions["teamindex"].db.create_project("team-lib", "team-lib", "team", "now")
    admin = app.test_client()
    login(admin, "root")
    page = admin.get("/admin/upstream")
    assert page.status_code == 200 and "team-lib" in page.get_data(as_text=True)
    assert simple(app, "acme-utils") == ["acme_utils-99.0-py3-none-any.whl"]
    # protect: the next proxied request no longer goes upstream
    done = post_form(
        admin, "/admin/upstream/protect", {"pattern": "Acme-*"}, page="/admin/upstream"
    )
    assert done.status_code == 303
    before = fake_upstream.count("acme-utils")
    assert simple(app, "acme-utils") == ["404"]
    assert fake_upstream.count("acme-utils") == before
    assert "acme-*" in admin.get("/admin/upstream").get_data(as_text=True)
    # exempt six from the cooldown: its young file shows on the next request
    assert young not in simple(app, "six")
    form = {"name": "Six", "upstream": "keep", "min_age": "0"}
    assert (
        post_form(admin, "/admin/upstream/project", form, page="/admin/upstream").status_code == 303
    )
    assert young in simple(app, "six")
    # deny, then back to the default
    form = {"name": "six", "upstream": "deny", "min_age": ""}
    assert (
        post_form(admin, "/admin/upstream/project", form, page="/admin/upstream").status_code == 303
    )
    assert simple(app, "six") == ["404"]
    form = {"name": "six", "upstream": "default", "min_age": "default"}
    assert (
        post_form(admin, "/admin/upstream/project", form, page="/admin/upstream").status_code == 303
    )
    assert young not in simple(app, "six") and len(simple(app, "six")) == 1
    # unprotect
    form = {"pattern": "acme-*", "remove": "yes"}
    assert (
        post_form(admin, "/admin/upstream/protect", form, page="/admin/upstream").status_code == 303
    )
    assert simple(app, "acme-utils") == ["acme_utils-99.0-py3-none-any.whl"]
    # the audit log says what the CLI would have said, with the admin's name and address
    assert _audit(app, "protect_add") == [("root", "", "acme-*")]
    assert _audit(app, "protect_remove") == [("root", "", "acme-*")]
    assert sorted(_audit(app, "project_set")) == sorted(
        [
            ("root", "six", "min-age=0"),
            ("root", "six", "upstream=deny"),
            ("root", "six", "upstream=default min-age=default"),
        ]
    )


@pytest.mark.parametrize(
    ("path", "form", "status"),
    [
        ("/admin/upstream/protect", {"pattern": ""}, 400),
        ("/admin/upstream/protect", {"pattern": "bad name!"}, 400),
        ("/admin/upstream/protect", {"pattern": "\u212aelvin-*"}, 400),
        ("/admin/upstream/protect", {"pattern": "never-added", "remove": "yes"}, 404),
        ("/admin/upstream/project", {"name": "six", "upstream": "maybe"}, 400),
        ("/admin/upstream/project", {"name": "six", "upstream": "keep", "min_age": "soon"}, 400),
        ("/admin/upstream/project", {"name": "six", "upstream": "keep", "min_age": ""}, 400),
        ("/admin/upstream/project", {"name": "-bad-", "upstream": "allow"}, 400),
    ],
)
def test_admin_upstream_refusals_change_nothing(app, client, path, form, status) -> None:
    login(client, "root")
    response = post_form(client, path, form, page="/admin/upstream")
    assert response.status_code == status, response.status
    assert "Traceback" not in response.get_data(as_text=True)
    assert no_rules(app)
    assert _audit(app, "protect_add") == [] and _audit(app, "project_set") == []


CHANGES = [
    ("/admin/upstream/protect", {"pattern": "six"}),
    ("/admin/upstream/project", {"name": "six", "upstream": "allow", "min_age": "0"}),
]


@pytest.mark.parametrize("who", ["user", "user-basic", "admin-token", "user-token", "anonymous"])
def test_only_an_admin_with_a_password_may_edit_origin_controls(app, who: str) -> None:
    client = app.test_client()
    headers: dict[str, str] = {}
    if who == "user":
        login(client, "alice")
    elif who == "user-basic":
        headers = basic("alice")
    elif who.endswith("token"):
        _id, secret = add_token(app, "root" if who == "admin-token" else "alice")
        headers = basic("__token__", secret)
    page = client.get("/admin/upstream", headers=headers)
    assert page.status_code in ((302,) if who == "anonymous" else (403,)), page.status
    csrf = csrf_of(client.get("/" if who == "user" else "/login"))
    for path, form in CHANGES:
        response = client.post(path, headers=headers, data={**form, "csrf_token": csrf})
        assert response.status_code in (302, 403), (path, response.status)
    assert no_rules(app)


def test_admin_forms_need_the_csrf_token(app, client) -> None:
    login(client, "root")
    response = client.post("/admin/upstream/protect", data={"pattern": "six"})
    assert response.status_code == 400
    assert no_rules(app)


def test_upstream_project_pages_link_admins_to_the_controls(proxy, fake_upstream, tmp_path):
    fake_upstream.publish(tmp_path, "six", "1.0")
    client = proxy().test_client()
    login(client, "root")
    assert 'href="/admin/upstream"' in client.get("/project/six/").get_data(as_text=True)
