"""The project list and project pages: visibility, search, README safety, install snippets."""

from __future__ import annotations

import html
import re
import urllib.request
from dataclasses import replace

import pytest
from builders import make_wheel
from conftest import add_token, basic, start_server
from uploading import upload
from web_support import login, post_form, seed, snippets_of

from teamindex.app import create_app
from teamindex.models import ReleaseInfo
from teamindex.web.pages import install_snippets, pick_latest


@pytest.fixture
def seeded(app, client, tmp_path):
    seed(app, client, tmp_path / "dists")
    return client


def _names(body: str) -> list[str]:
    return re.findall(r'class="name" href="/project/([^/]+)/"', body)


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"
    response = client.get("/project/team-demo/?x=1")
    assert response.headers["Location"].startswith("/login?next=/project/team-demo/")


def test_home_lists_visible_projects_newest_first(seeded, app):
    login(seeded, "alice")
    response = seeded.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    # secret-proj is restricted and alice has no role: it is not there at all.
    assert _names(response.get_data(as_text=True)) == ["other-lib", "team-demo"]
    assert "secret" not in response.get_data(as_text=True).lower()


def test_home_shows_restricted_projects_to_role_holders_and_admins(seeded):
    login(seeded, "bob")
    assert "secret-proj" in _names(seeded.get("/").get_data(as_text=True))
    assert seeded.post("/logout", data={}).status_code == 400  # no CSRF token: refused
    assert post_form(seeded, "/logout").status_code == 303
    login(seeded, "root")
    assert _names(seeded.get("/").get_data(as_text=True)) == [
        "secret-proj",
        "other-lib",
        "team-demo",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("demo", ["team-demo"]),
        ("PARSING", ["other-lib"]),  # summary, case-insensitive
        ("team.demo", ["team-demo"]),  # display name
        ("secret", []),  # invisible stays invisible in search too
        ("nothing-like-this", []),
    ],
)
def test_search_matches_name_and_summary(seeded, query, expected):
    login(seeded, "alice")
    body = seeded.get("/", query_string={"q": query}).get_data(as_text=True)
    assert _names(body) == expected
    assert html.escape(query) in body


def test_search_query_is_escaped(seeded):
    login(seeded, "alice")
    body = seeded.get("/", query_string={"q": "<script>x</script>"}).get_data(as_text=True)
    assert "<script>x</script>" not in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body


def test_project_page_shows_release_files_and_metadata(seeded):
    login(seeded, "alice")
    response = seeded.get("/project/team-demo/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    # Latest = highest final, non-yanked release: 1.1, not 2.0rc1.
    assert '<span class="version">1.1</span>' in body
    assert "Team demo helpers" in body
    assert "<code>&gt;=3.10</code>" in body  # Requires-Python
    for version in ("1.0", "1.1", "2.0rc1"):
        assert f'id="v-{version}"' in body
    assert "team_demo-1.1-py3-none-any.whl" in body
    assert 'href="/files/team-demo/team_demo-1.1-py3-none-any.whl"' in body
    assert "<td>alice</td>" in body  # uploader
    assert re.search(r"<code class=\"hash\" title=\"[0-9a-f]{64}\">", body)
    # Dependencies: the private one that exists is linked; public and invisible ones not.
    assert 'href="/project/other-lib/" class="private">other-lib&gt;=1.0</a>' in body
    assert "<code>requests&gt;=2</code>" in body
    assert 'href="/project/secret-proj/"' not in body


def test_project_page_readme_is_rendered_and_neutralised(seeded):
    login(seeded, "alice")
    body = seeded.get("/project/team-demo/").get_data(as_text=True)
    readme = body.split('<article class="readme">', 1)[1].split("</article>", 1)[0]
    assert "<strong>team</strong>" in readme
    assert 'id="user-content-team-demo"' in readme
    assert "<script" not in readme
    assert "onerror" not in readme
    assert "javascript:" not in readme.replace("[click me](javascript:alert(1))", "")
    assert 'href="javascript' not in body


def test_install_snippets_use_this_servers_url(seeded):
    body = seeded.get(
        "/project/team-demo/", base_url="https://pkgs.example.test", headers=basic("alice")
    ).get_data(as_text=True)
    url = "https://pkgs.example.test/simple/"
    # team-demo 1.1 needs other-lib, also on this index: every snippet names or pins both
    # (a deliberate change, issue 12: they named team-demo alone).
    assert snippets_of(body) == dict(install_snippets(url, ["team-demo", "other-lib"]))
    snippets = snippets_of(body)
    assert (
        'PIP_INDEX_URL="https://__token__:${TEAMINDEX_TOKEN}@pkgs.example.test/simple/"'
        " pip install team-demo" in snippets["pip"]
    )
    assert f"uv add --index team={url} team-demo other-lib" in snippets["uv"]
    assert f'url = "{url}"\nexplicit = true\n' in snippets["uv"]
    assert f"poetry source add team {url} --priority explicit\n" in snippets["poetry"]
    assert snippets["poetry"].endswith("\npoetry add --source team team-demo other-lib")


def test_install_snippets_pure():
    snippets = dict(install_snippets("http://h:8080/simple/", ["x", "x-core"]))
    assert snippets["pip"] == (
        "# credentials: ~/.netrc (machine h login __token__ password <token>), keyring,"
        " or as here\n"
        'PIP_INDEX_URL="http://__token__:${TEAMINDEX_TOKEN}@h:8080/simple/" pip install x'
    )
    assert snippets["uv"].splitlines() == [
        "# once: this index in pyproject.toml, used only for the packages pinned to it",
        "cat >> pyproject.toml <<'EOF'",
        "",
        "[[tool.uv.index]]",
        'name = "team"',
        'url = "http://h:8080/simple/"',
        "explicit = true",
        "EOF",
        "# credentials (or keyring / ~/.netrc)",
        'export UV_INDEX_TEAM_USERNAME=__token__ UV_INDEX_TEAM_PASSWORD="${TEAMINDEX_TOKEN}"',
        "# pins each package of this index to it ([tool.uv.sources]), dependencies included",
        "uv add --index team=http://h:8080/simple/ x x-core",
    ]
    assert snippets["poetry"].splitlines() == [
        "poetry source add team http://h:8080/simple/ --priority explicit",
        "# credentials: poetry config http-basic.team __token__ (asks; keyring), or",
        "export POETRY_HTTP_BASIC_TEAM_USERNAME=__token__"
        ' POETRY_HTTP_BASIC_TEAM_PASSWORD="${TEAMINDEX_TOKEN}"',
        "# with the packages of this index it needs: poetry passes no source on (#2610)",
        "poetry add --source team x x-core",
    ]


@pytest.fixture
def acme(seeded, app, tmp_path):
    """acme-app -> acme-core -> acme-util (and back to acme-app: a cycle), plus the
    restricted secret-proj (bob's), requests (not here) and an extra-only acme-extra."""
    wheels = [
        ("acme-util", []),
        ("acme-extra", []),
        ("acme-core", ["acme-util>=1", "acme-app"]),
        (
            "acme-app",
            ["acme-core>=1", "secret-proj", "requests>=2", "acme-extra; extra == 'more'"],
        ),
    ]
    for name, requires in wheels:
        wheel = make_wheel(tmp_path, name, "1.0", requires_dist=requires)
        assert upload(seeded, wheel, "alice").status_code == 200
    return seeded


def _listed(client, headers, name="acme-app"):
    body = client.get(f"/project/{name}/", headers=headers).get_data(as_text=True)
    return snippets_of(body)["poetry"].rsplit("poetry add --source team ", 1)[1].split()


def test_snippets_name_private_dependencies_recursively(acme, app):
    assert _listed(acme, basic("alice")) == ["acme-app", "acme-core", "acme-util"]
    # bob holds secret-proj: for him it is a private dependency like the others.
    assert _listed(acme, basic("bob")) == ["acme-app", "acme-core", "secret-proj", "acme-util"]
    assert _listed(acme, basic("root")) == ["acme-app", "acme-core", "secret-proj", "acme-util"]


def test_snippets_never_name_what_the_viewer_may_not_see(acme, app):
    """For alice, restricted secret-proj is exactly like requests, which is not here."""
    body = acme.get("/project/acme-app/", headers=basic("alice")).get_data(as_text=True)
    assert "secret-proj" not in "".join(snippets_of(body).values())
    # A token limited to acme-app sees nothing else, though its owner could.
    _id, secret = add_token(app, "alice", scope="read", projects=["acme-app"])
    assert _listed(acme, basic("__token__", secret)) == ["acme-app"]
    _id, secret = add_token(app, "alice", scope="read", projects=["acme-*"])
    assert _listed(acme, basic("__token__", secret)) == ["acme-app", "acme-core", "acme-util"]


def _release(version: str, *, yanked: bool = False) -> ReleaseInfo:
    return ReleaseInfo(1, "p", "p", "team", None, version, version, "", yanked, "", "", "")


@pytest.mark.parametrize(
    ("versions", "yanked", "expected"),
    [
        (["1.0", "1.1", "2.0rc1"], [], "1.1"),
        (["1.0", "1.1"], ["1.1"], "1.0"),
        (["2.0rc1", "2.0rc2"], [], "2.0rc2"),
        (["1.0", "2.0rc1"], ["1.0"], "2.0rc1"),
        (["1.0", "1.1"], ["1.0", "1.1"], "1.1"),
        (["1.10", "1.9"], [], "1.10"),
    ],
)
def test_pick_latest(versions, yanked, expected):
    releases = [_release(v, yanked=v in yanked) for v in versions]
    latest = pick_latest(releases)
    assert latest is not None and latest.version == expected
    assert pick_latest([]) is None


def test_yanked_versions_are_marked_with_reason(seeded, app):
    app.extensions["teamindex"].db.set_yanked("team-demo", "1.1", yanked=True, reason="broken <b>")
    login(seeded, "alice")
    body = seeded.get("/project/team-demo/").get_data(as_text=True)
    assert '<span class="version">1.0</span>' in body  # latest non-yanked final
    assert '<li class="yanked">' in body
    assert "broken &lt;b&gt;" in body


def test_non_normalized_name_redirects(seeded):
    login(seeded, "alice")
    response = seeded.get("/project/Team.Demo/")
    assert response.status_code == 301
    assert response.headers["Location"] == "/project/team-demo/"


def test_restricted_and_missing_projects_are_the_same_404(seeded):
    login(seeded, "alice")
    hidden = seeded.get("/project/secret-proj/")
    missing = seeded.get("/project/no-such-thing/")
    assert hidden.status_code == missing.status_code == 404
    assert "secret-proj" in hidden.status and "no-such-thing" in missing.status
    assert hidden.mimetype == "text/html"


def test_restricted_project_visible_to_owner(seeded):
    login(seeded, "bob")
    assert seeded.get("/project/secret-proj/").status_code == 200


def test_pages_accept_basic_auth(seeded):
    assert seeded.get("/", headers=basic("alice")).status_code == 200
    assert seeded.get("/project/secret-proj/", headers=basic("alice")).status_code == 404
    wrong = seeded.get("/", headers=basic("alice", "wrong-password"))
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'


def test_anonymous_read_index_shows_team_projects(anonymous_settings, tmp_path):
    app = create_app(anonymous_settings)
    client = app.test_client()
    from conftest import add_user

    add_user(app, "alice")
    add_user(app, "bob")
    seed(app, client, tmp_path / "dists")
    body = client.get("/").get_data(as_text=True)
    assert _names(body) == ["other-lib", "team-demo"]
    assert client.get("/project/secret-proj/").status_code == 404
    assert "Log in" in body
    app.extensions["teamindex"].db.close()


def test_page_security_headers(seeded):
    login(seeded, "alice")
    response = seeded.get("/project/team-demo/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_static_assets_are_served(client):
    with client.get("/static/style.css") as response:
        assert response.mimetype == "text/css"
    with client.get("/static/teamindex.js") as response:
        assert "clipboard" in response.get_data(as_text=True)


def test_empty_index_explains_how_to_upload(client):
    login(client, "alice")
    body = client.get("/").get_data(as_text=True)
    assert "No projects yet" in body and "http://localhost/legacy/" in body


def test_simple_api_is_unchanged_for_browsers_with_a_session(seeded):
    login(seeded, "alice")
    # The session cookie is not credentials for the API: Basic auth only, no cookie set.
    response = seeded.get("/simple/team-demo/")
    assert response.status_code == 401
    response = seeded.get("/simple/team-demo/", headers=basic("alice"))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    url = "/files/team-demo/team_demo-1.1-py3-none-any.whl"
    with seeded.get(url, headers=basic("alice")) as files:
        assert files.status_code == 200 and "Set-Cookie" not in files.headers


# -- downloads from the project page: /files/ accepts the session too (read-only) ------------

WHEEL_URL = "/files/team-demo/team_demo-1.1-py3-none-any.whl"
SECRET_URL = "/files/secret-proj/secret_proj-0.1-py3-none-any.whl"


def _download(client, url: str, method: str = "GET", **kwargs):
    response = client.open(url, method=method, **kwargs)
    response.get_data()
    response.close()
    return response


def test_project_page_links_download_with_the_session(seeded):
    login(seeded, "alice")
    page = seeded.get("/project/team-demo/").get_data(as_text=True)
    assert WHEEL_URL in re.findall(r'href="(/files/[^"]+)"', page)
    for url in (WHEEL_URL, WHEEL_URL + ".metadata"):
        for method in ("GET", "HEAD"):
            response = _download(seeded, url, method)
            assert response.status_code == 200, (url, method, response.status)
            # Read-only: a download never sets or refreshes the cookie.
            assert "Set-Cookie" not in response.headers
            assert "Cookie" not in response.headers.get("Vary", "")
    wheel = _download(seeded, WHEEL_URL)
    with seeded.get(WHEEL_URL, headers=basic("alice")) as by_basic:
        assert wheel.data == by_basic.data
        assert wheel.headers["ETag"] == by_basic.headers["ETag"]


def test_downloads_without_session_or_credentials_are_401(seeded):
    login(seeded, "alice")
    assert post_form(seeded, "/logout").status_code == 303
    for url in (WHEEL_URL, WHEEL_URL + ".metadata"):
        response = _download(seeded, url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
        assert "Set-Cookie" not in response.headers


def test_session_downloads_follow_the_read_rules(seeded, app):
    login(seeded, "alice")  # no role in the restricted secret-proj
    assert _download(seeded, SECRET_URL).status_code == 404
    assert _download(seeded, SECRET_URL + ".metadata").status_code == 404
    owner = app.test_client()
    login(owner, "bob")
    assert _download(owner, SECRET_URL).status_code == 200
    # The session ends with the password, as for pages; the response sets no cookie.
    db = app.extensions["teamindex"].db
    db.set_password("bob", db.get_user("alice").password_hash)
    stale = _download(owner, SECRET_URL)
    assert stale.status_code == 401 and "Set-Cookie" not in stale.headers


def test_basic_credentials_win_over_the_session(seeded, app):
    """Clients sending credentials see exactly what they saw before: a wrong password is a
    401 even with a session cookie, and the rights are those of the Basic-auth user."""
    login(seeded, "alice")
    assert _download(seeded, WHEEL_URL, headers=basic("alice", "wrong")).status_code == 401
    assert _download(seeded, SECRET_URL, headers=basic("bob")).status_code == 200
    owner = app.test_client()
    login(owner, "bob")
    assert _download(owner, SECRET_URL, headers=basic("alice")).status_code == 404


def test_session_downloads_obey_the_ip_allowlists(seeded, app):
    from teamindex.clock import utc_now

    login(seeded, "alice")
    db = app.extensions["teamindex"].db
    db.add_allow("10.0.0.0/8", db.get_user("alice").id, "", utc_now())
    response = _download(seeded, WHEEL_URL)
    assert response.status_code == 403 and "not allowed for this user" in response.status


def test_uploads_ignore_the_session(seeded, tmp_path):
    login(seeded, "alice")
    response = seeded.post("/legacy/", data={":action": "file_upload"})
    assert response.status_code == 401


def test_upload_still_answers_at_root(seeded, tmp_path):
    # POST / is the upload API (twine's default for some configs); GET / is the web page.
    response = seeded.post("/", headers=basic("alice"), data={":action": "bogus"})
    assert response.status_code == 400


def test_project_without_readme(seeded, app):
    login(seeded, "alice")
    body = seeded.get("/project/other-lib/").get_data(as_text=True)
    assert "This release has no description." in body


def test_home_when_every_release_is_yanked(seeded, app):
    db = app.extensions["teamindex"].db
    db.set_yanked("other-lib", "1.0", yanked=True, reason="")
    login(seeded, "alice")
    assert "other-lib" in _names(seeded.get("/").get_data(as_text=True))


@pytest.mark.parametrize(
    ("trusted_proxy", "expected"),
    [("127.0.0.1", "https://pkgs.example.test/simple/"), ("", "http://127.0.0.1:")],
)
def test_snippets_behind_the_trusted_proxy(
    app, client, settings, tmp_path, trusted_proxy, expected
):
    """Behind the trusted proxy the snippets name the public URL (waitress applies
    X-Forwarded-Proto/-Host); from anyone else those headers are ignored."""
    seed(app, client, tmp_path / "dists")
    live, server = start_server(app, replace(settings, trusted_proxy=trusted_proxy))
    try:
        request = urllib.request.Request(
            f"{live.url}/project/team-demo/",
            headers=basic("alice")
            | {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "pkgs.example.test",
                "X-Forwarded-For": "10.9.9.9",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        assert f'url = "{expected}' in snippets_of(body)["uv"]
    finally:
        server.stop()
