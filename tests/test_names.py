"""Look-alike project names (issue 10, low 13): PEP 508 names are ASCII, so a dotless i,
a long s or the Kelvin sign never names a project — not on upload, not in a URL (404, never
a redirect to the ASCII twin), not in a grant or a token's project list."""

from __future__ import annotations

import pytest
from builders import make_wheel
from conftest import basic
from uploading import upload
from web_support import login, post_form

from teamindex.index.dists import DistributionError, project_pattern, validate_project_name

# "pub" with a dotless i, "secret" with a long s, "key" with the Kelvin sign (lower(): "k").
LOOK_ALIKES = ("pub\u0131", "\u017fecret", "\u212aey", "\u212aEY")


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_names_are_ascii(name):
    with pytest.raises(DistributionError):
        validate_project_name(name)
    with pytest.raises(DistributionError):
        project_pattern(name)
    with pytest.raises(DistributionError):
        project_pattern(name + "*")


@pytest.mark.parametrize("name", LOOK_ALIKES)
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_upload_of_a_look_alike_name_is_400(client, tmp_path, name, kind):
    real = make_wheel(tmp_path, "key", "1.0")
    data = real.read_bytes()
    filename = f"{name}-1.0-py3-none-any.whl" if kind == "wheel" else f"{name}-1.0.tar.gz"
    response = upload(client, None, data=data, filename=filename)
    assert response.status_code == 400, response.status
    assert client.application.extensions["teamindex"].db.get_project("key") is None


@pytest.fixture
def key_project(app, client, tmp_path):
    """The ASCII twin exists, so a lax lookup would find it."""
    assert upload(client, make_wheel(tmp_path, "key", "1.0"), "alice").status_code == 200
    return "key"


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_urls_are_404(client, key_project, name):
    auth = basic("alice")
    for method, path in (
        ("GET", f"/simple/{name}/"),
        ("GET", f"/legacy/+simple/{name}/"),
        ("GET", f"/project/{name}/"),
        ("GET", f"/docs/{name}/1.0/"),
        ("POST", f"/docs/{name}/1.0/"),
        ("POST", f"/api/{name}/1.0/yank"),
        ("POST", f"/api/{name}/1.0/unyank"),
        ("GET", f"/files/{name}/key-1.0-py3-none-any.whl"),
    ):
        response = client.open(path, method=method, headers=auth, data=b"x")
        assert response.status_code == 404, (path, response.status)
        assert "Location" not in response.headers
    assert not client.application.extensions["teamindex"].db.release_infos(None)[0].yanked


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_web_grant_and_token_refuse_look_alikes(app, client, key_project, name):
    login(client, "root")
    response = post_form(client, "/admin/grants", {"project": name, "user": "bob", "role": "owner"})
    assert response.status_code == 400, response.status
    db = app.extensions["teamindex"].db
    assert db.project_with_role("key", db.get_user("bob").id)[1] is None
    response = post_form(client, "/account/tokens", {"scope": "read", "projects": name})
    assert response.status_code == 400, response.status
    assert not db.list_tokens(db.get_user("root").id)
