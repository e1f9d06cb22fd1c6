"""/publishers/<project>/: owners and admins manage trusted publishers in the browser, with
the CLI's rules; everyone else gets the missing project's 404, tokens a 403."""

from __future__ import annotations

import pytest
from conftest import basic
from web_support import login, post_form

from teamindex.clock import utc_now

GITHUB = {
    "kind": "github",
    "repository": "octo-org/octo-repo",
    "repository_owner_id": "1234567",
    "workflow": "release.yml",
    "environment": "pypi",
}


def _db(app):
    return app.extensions["teamindex"].db


@pytest.fixture
def owned(app):
    db = _db(app)
    project = db.create_project("octo-app", "octo-app", "team", utc_now())
    db.set_role(db.get_user("alice").id, project.id, "owner")
    db.set_role(db.get_user("bob").id, project.id, "maintainer")
    return project


def test_owner_adds_lists_and_removes_a_publisher(app, client, owned):
    login(client, "alice")
    page = "/publishers/octo-app/"
    response = post_form(client, page, GITHUB, page=page)
    assert response.status_code == 303
    (publisher,) = _db(app).list_publishers("octo-app")
    assert publisher.user_name == "alice" and not publisher.pending
    assert publisher.claims["repository_owner_id"] == "1234567"
    body = client.get(page).get_data(as_text=True)
    assert "repository=octo-org/octo-repo" in body and "teamindex-" in body
    removed = post_form(client, page + "remove", {"id": str(publisher.id)}, page=page)
    assert removed.status_code == 303 and _db(app).list_publishers() == []
    actions = [e.action for e in _db(app).query_audit(since="2000-01-01", user="alice")]
    assert "publisher_add" in actions and "publisher_remove" in actions


@pytest.mark.parametrize("user", ["bob", "alice"])
def test_non_owners_get_the_missing_projects_404(app, client, owned, user):
    if user == "alice":  # alice owns octo-app, not this restricted one of root's
        _db(app).create_project("secret", "secret", "restricted", utc_now())
        name = "secret"
    else:
        name = "octo-app"
    login(client, user)
    assert client.get(f"/publishers/{name}/").status_code == 404
    response = post_form(client, f"/publishers/{name}/", GITHUB)
    assert response.status_code == 404 and _db(app).list_publishers() == []


def test_pending_publishers_are_for_admins(app, client):
    login(client, "alice")
    assert client.get("/publishers/not-yet/").status_code == 404
    client.get("/logout")
    admin = app.test_client()
    login(admin, "root")
    page = "/publishers/not-yet/"
    assert "does not exist yet" in admin.get(page).get_data(as_text=True)
    assert post_form(admin, page, GITHUB, page=page).status_code == 303
    (publisher,) = _db(app).list_publishers()
    assert publisher.pending and publisher.user_name == "root"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"repository_owner_id": "octo-org"}, "must be a number"),
        ({"workflow": "../x"}, "--workflow"),
        ({"issuer": "http://token.example"}, "https"),
        ({"kind": "svn"}, "kind"),
    ],
)
def test_bad_publisher_forms_are_a_clear_400(app, client, owned, change, words):
    login(client, "alice")
    response = post_form(client, "/publishers/octo-app/", GITHUB | change)
    assert response.status_code == 400 and words in response.get_data(as_text=True)


def test_tokens_cannot_manage_publishers(app, client, owned):
    from conftest import add_token

    _id, secret = add_token(app, "alice")
    response = client.post("/publishers/octo-app/", data=GITHUB, headers=basic("__token__", secret))
    assert response.status_code in {400, 403}
    assert _db(app).list_publishers() == []
