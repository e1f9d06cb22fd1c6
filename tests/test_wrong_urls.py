"""The URLs publishers get wrong or print: POST to the install URL says where uploads go, and
the `/legacy/<project>/<version>/` hatch prints after publishing leads to the project page
(issue 12). Real twine against /simple/ is in tests/e2e/test_wrong_urls.py."""

from __future__ import annotations

import pytest
from builders import make_wheel
from conftest import add_token, basic
from uploading import upload

MESSAGE = "This is the install URL; upload to http://localhost/legacy/"


@pytest.mark.parametrize("path", ["/simple/", "/simple", "/simple/team-demo/", "/simple/x/y"])
@pytest.mark.parametrize("credential", ["password", "read-token", "wrong-password", "none"])
def test_post_to_the_install_url_says_where_uploads_go(app, client, tmp_path, path, credential):
    headers = {
        "password": basic("alice"),
        "read-token": basic("__token__", add_token(app, "alice", scope="read")[1]),
        "wrong-password": basic("alice", "nope-nope-nope"),
        "none": {},
    }[credential]
    response = upload(
        client, make_wheel(tmp_path, "team-demo", "1.0"), None, url=path, headers=headers
    )
    assert response.status == f"405 {MESSAGE}"
    assert response.get_data(as_text=True) == MESSAGE + "\n"
    assert response.headers["Allow"] == "GET, HEAD"
    assert app.extensions["teamindex"].db.serial() == 0  # nothing stored


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/legacy/team-demo/1.0/", "/project/team-demo/"),
        ("/legacy/team-demo/1.0", "/project/team-demo/"),
        ("/legacy/Team_Demo/", "/project/Team_Demo/"),
        ("/legacy/no-such-thing/2.0/", "/project/no-such-thing/"),
    ],
)
def test_the_url_hatch_prints_leads_to_the_project_page(client, tmp_path, path, location):
    assert upload(client, make_wheel(tmp_path, "team-demo", "1.0")).status_code == 200
    response = client.get(path, headers=basic("alice"))
    assert response.status_code == 302
    assert response.headers["Location"] == location
    followed = client.get(path, headers=basic("alice"), follow_redirects=True)
    assert followed.status_code == (404 if "no-such" in path else 200)


def test_hatch_probe_and_upload_url_keep_their_meaning(client, tmp_path):
    assert upload(client, make_wheel(tmp_path, "team-demo", "1.0")).status_code == 200
    probe = client.get("/legacy/+simple/team-demo/", headers=basic("alice"))
    assert probe.status_code == 200
    assert "team_demo-1.0-py3-none-any.whl" in probe.get_data(as_text=True)
    assert client.get("/legacy/", headers=basic("alice")).status_code == 405
