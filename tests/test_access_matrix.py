"""The permission matrix: users x credential kinds x visibility x client IP x endpoint.

Every cell is asserted. The expectations come from the small oracle tables below, written
from the issue's rules (not from teamindex.permissions), so a change in either shows up.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import FAST_HASH, PASSWORD, basic, start_cold_server, start_server, worker_tasks
from packaging.utils import canonicalize_name
from web_support import CSRF_RE

from teamindex.access.auth import hash_password, new_token_secret, token_digest
from teamindex.app import create_app
from teamindex.clock import utc_now
from teamindex.config import Settings

USERS = ("admin", "owner", "maintainer", "reader", "outsider")
CREDS = ("password", "token-read", "token-upload", "token-other", "token-expired", "token-revoked")
VISIBILITY = ("team", "restricted")
IPS = {"inside": "10.1.2.3", "outside": "192.0.2.7"}
# upload-legacy: the same upload under an old spelling (Team.Proj-2.0-…whl, issue 12).
ENDPOINTS = ("root", "page", "file", "metadata", "upload", "upload-legacy", "yank")

# Oracle 1: who may read a project of each visibility (with a credential that covers it).
CAN_READ = {
    "team": {"admin", "owner", "maintainer", "reader", "outsider"},
    "restricted": {"admin", "owner", "maintainer", "reader"},
}
# Oracle 2: who may upload a new version of an existing project, or yank a release.
CAN_UPLOAD = {"admin", "owner", "maintainer"}


def expected_status(user: str, cred: str, visibility: str, ip: str, endpoint: str) -> int:
    """The issue's rules, cell by cell."""
    if endpoint == "upload-legacy":
        endpoint = "upload"  # a spelling of the name is the name: same rights, same answers
    if ip == "outside":
        return 403  # before any credential is looked at
    if cred in ("token-expired", "token-revoked"):
        return 401  # with its reason (issue 10), not counted by the throttle
    if cred == "token-read" and endpoint == "upload":
        return 403  # refused from the headers, before the body is read: no project involved
    visible = user in CAN_READ[visibility] and cred != "token-other"
    if endpoint == "root":
        return 200  # the listing itself; membership is checked separately
    writes = endpoint in ("upload", "yank")
    # What the caller knows of its own token comes first, whether the project exists or not.
    if writes and cred == "token-read":
        return 403  # a read token never writes, whatever its owner may do
    if endpoint == "yank" and cred != "password":
        return 403  # no token scope includes yanking
    if writes and cred == "token-other":
        return 403  # outside the token's project list
    if not visible:
        return 404  # invisible projects are indistinguishable from missing ones
    if not writes:
        return 200
    return 200 if user in CAN_UPLOAD else 403


def expected_listed(user: str, cred: str, visibility: str) -> bool:
    return user in CAN_READ[visibility] and cred != "token-other"


class Matrix:
    """One index with a team and a restricted project, five users and all token kinds."""

    def __init__(
        self, root: Path, new_projects: str = "anyone", upstream: str = "", trusted_proxy: str = ""
    ) -> None:
        settings = Settings(
            data_dir=root / "data",
            password_hash=FAST_HASH,
            threads=2,
            new_projects=new_projects,
            upstream=upstream,
            trusted_proxy=trusted_proxy,
            # Only revoked and expired tokens fail here, and the throttle does not count them
            # (issue 10): the matrix runs with the default limits.
        )
        self.settings = settings
        self.app = create_app(settings)
        svc = self.app.extensions["teamindex"]
        self.db = svc.db
        now = datetime.now(timezone.utc)
        self.users = {}
        for name in USERS:
            self.users[name] = self.db.add_user(
                name, hash_password(PASSWORD, FAST_HASH), is_admin=name == "admin", now=utc_now()
            )
        self.db.add_allow("10.0.0.0/8", None, "office", utc_now())
        self.client = self.app.test_client()
        self.files: dict[str, str] = {}
        self.dists = root / "dists"
        self.dists.mkdir()
        for visibility in VISIBILITY:
            project = f"{visibility}-proj"
            if new_projects != "anyone":  # reserved for its owner, as the refusal advises
                reserved = self.db.create_project(project, project, "team", utc_now())
                self.db.set_role(self.users["owner"].id, reserved.id, "owner")
            wheel = make_wheel(self.dists, project, "1.0")
            response = self.upload("owner", PASSWORD, wheel, ip=IPS["inside"])
            assert response.status_code == 200, response.status
            record = self.db.get_project(project)
            assert record is not None
            self.db.set_visibility(project, visibility)
            self.db.set_role(self.users["maintainer"].id, record.id, "maintainer")
            self.db.set_role(self.users["reader"].id, record.id, "reader")
            self.files[visibility] = wheel.name
        self.secrets: dict[tuple[str, str], str] = {}
        for name in USERS:
            user = self.users[name]
            for cred, scope, projects, expires in (
                ("token-read", "read", [], None),
                ("token-upload", "upload", [], None),
                ("token-other", "upload", ["some-other-*"], None),
                ("token-expired", "upload", [], (now - timedelta(days=1)).isoformat()),
                ("token-revoked", "upload", [], None),
            ):
                secret = new_token_secret()
                token_id = self.db.add_token(
                    user.id,
                    token_digest(secret),
                    scope=scope,
                    projects=projects,
                    allow_ips=[],
                    note=cred,
                    expires=expires,
                    now=utc_now(),
                )
                if cred == "token-revoked":
                    self.db.revoke_token(token_id, utc_now())
                self.secrets[(name, cred)] = secret
        self.versions = itertools.count(2)

    def auth(self, user: str, cred: str) -> tuple[str, str]:
        if cred == "password":
            return user, PASSWORD
        return "__token__", self.secrets[(user, cred)]

    def upload(self, user: str, password: str, wheel: Path, *, ip: str):
        data = wheel.read_bytes()
        with wheel.open("rb") as handle:
            return self.client.post(
                "/legacy/",
                auth=(user, password),
                environ_base={"REMOTE_ADDR": ip},
                data={
                    ":action": "file_upload",
                    "protocol_version": "1",
                    "filetype": "bdist_wheel",
                    "sha256_digest": hashlib.sha256(data).hexdigest(),
                    "content": (handle, wheel.name),
                },
            )

    def request(self, endpoint: str, user: str, cred: str, visibility: str, ip: str):
        auth = self.auth(user, cred)
        project = f"{visibility}-proj"
        environ = {"REMOTE_ADDR": IPS[ip]}
        filename = self.files[visibility]
        paths = {
            "root": "/simple/",
            "page": f"/simple/{project}/",
            "file": f"/files/{project}/{filename}",
            "metadata": f"/files/{project}/{filename}.metadata",
        }
        if endpoint in paths:
            response = self.client.get(paths[endpoint], auth=auth, environ_base=environ)
            response.get_data()  # buffer the body, then release the file it streamed from
            response.close()
            return response
        if endpoint == "yank":
            return self.client.post(
                f"/api/{project}/1.0/yank", auth=auth, environ_base=environ, data={"reason": "x"}
            )
        version = f"{next(self.versions)}.0"
        if endpoint == "upload-legacy":
            spelled = project.title().replace("-", ".")  # Team.Proj
            wheel = make_wheel(self.dists, spelled, version, legacy=True)
        else:
            wheel = make_wheel(self.dists, project, version)
        return self.upload(*auth, wheel, ip=IPS[ip])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    return Matrix(tmp_path_factory.mktemp("matrix"))


CELLS = list(itertools.product(USERS, CREDS, VISIBILITY, IPS))


@pytest.mark.parametrize(("user", "cred", "visibility", "ip"), CELLS)
def test_permission_cell(matrix: Matrix, user: str, cred: str, visibility: str, ip: str) -> None:
    for endpoint in ENDPOINTS:
        response = matrix.request(endpoint, user, cred, visibility, ip)
        want = expected_status(user, cred, visibility, ip, endpoint)
        assert response.status_code == want, (endpoint, response.status, response.data[:200])
        if want == 401:
            assert response.headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
            state = cred.removeprefix("token-")
            assert response.status == f"401 Invalid credentials: token {state}.", endpoint
        if endpoint == "root" and want == 200:
            listed = f'href="{visibility}-proj/"' in response.get_data(as_text=True)
            assert listed == expected_listed(user, cred, visibility), endpoint


def test_matrix_covers_every_combination() -> None:
    assert len(CELLS) * len(ENDPOINTS) == 5 * 6 * 2 * 2 * 7


# -- creating a project: the first upload to a free name (serve --new-projects) --------------
# Oracle 4: who may create which name under each policy (admins always may).
POLICIES = ("anyone", "admins", "prefix:Acme_,team-")
# (how the name is spelled in the upload, given a counter; its kind for the oracle)
NEW_NAMES = {
    "prefixed": "ACME.new.{n}",  # normalizes to acme-new-N: under the prefix acme-
    "prefixed-other": "Team_New{n}",  # the second prefix
    "unprefixed": "other-new-{n}",
    "prefix-without-separator": "acmenew{n}",  # "acme" alone is not the prefix "acme-"
    "hidden": "restricted-proj",  # exists, restricted: outsiders must see a free name's answer
}


def may_create(user: str, policy: str, kind: str) -> bool:
    if user == "admin" or policy == "anyone":
        return True
    return policy.startswith("prefix:") and kind.startswith("prefixed")


def expected_new_project_status(user: str, cred: str, ip: str, policy: str, kind: str) -> int:
    if ip == "outside":
        return 403
    if cred in ("token-expired", "token-revoked"):
        return 401
    if cred in ("token-read", "token-other"):
        return 403  # the token's own limits come first, whatever the name
    if kind == "hidden" and user in CAN_READ["restricted"]:
        return 200 if user in CAN_UPLOAD else 403  # an existing project: roles decide
    if not may_create(user, policy, kind):
        return 403  # the policy, in the same words for a hidden name as for a free one
    return 404 if kind == "hidden" else 200  # a hidden name cannot be created


@pytest.fixture(scope="module", params=POLICIES)
def policy_matrix(request, tmp_path_factory) -> tuple[str, Matrix]:
    return request.param, Matrix(tmp_path_factory.mktemp("policy"), new_projects=request.param)


NEW_CELLS = list(itertools.product(USERS, CREDS, IPS, NEW_NAMES))


@pytest.mark.parametrize(("user", "cred", "ip", "kind"), NEW_CELLS)
def test_new_project_cell(policy_matrix, user: str, cred: str, ip: str, kind: str) -> None:
    policy, matrix = policy_matrix
    n = next(matrix.versions)
    spelled = NEW_NAMES[kind].format(n=n)
    wheel = make_wheel(matrix.dists, spelled, f"{n}.0")
    response = matrix.upload(*matrix.auth(user, cred), wheel, ip=IPS[ip])
    want = expected_new_project_status(user, cred, ip, policy, kind)
    assert response.status_code == want, (policy, response.status)
    name = canonicalize_name(spelled)
    refused_by_policy = (
        want == 403 and ip == "inside" and cred in ("password", "token-upload")
    ) and not (kind == "hidden" and user in CAN_READ["restricted"])
    if refused_by_policy:
        # One line naming the admin command that reserves the name for the user.
        assert response.status == (
            f"403 Creating project {name!r} is reserved to administrators"
            + (" (others: names starting with 'acme-' or 'team-')" if "prefix" in policy else "")
            + f" here: ask an administrator to run `teamindex project create {name} "
            f"--owner {user}`."
        )
    project = matrix.db.get_project(name)
    if want == 200 and kind != "hidden":
        assert project is not None
        assert [u for u, role in matrix.db.project_roles(project.id)] == [user]
    elif kind != "hidden":
        assert project is None  # nothing was claimed by a refused upload


def test_new_project_matrix_covers_every_combination() -> None:
    assert len(NEW_CELLS) * len(POLICIES) == 5 * 6 * 2 * 5 * 3


# -- the web pages: administration and account management --------------------------------------
# Oracle 3: a token (any scope, any project list, an admin's too) is for tools; it never acts
# as an administrator or as the account on the web pages, and never gets a browser session.
WEB_GETS = (
    "/admin/",
    "/admin/users",
    "/admin/grants",
    "/admin/allowlists",
    "/admin/audit",
    "/admin/project/restricted-proj/",
    "/admin/upstream",
    "/account/",
    "/metrics",  # not a page, but for administrators too
    "/publishers/restricted-proj/",  # trusted publishers (issue 15): owners and admins
)
# (path, form, status for an administrator's password): changes an admin could make with a
# stolen read token before issue 10; confirmations (200) change nothing yet.
WEB_POSTS = (
    ("/admin/users", {"name": "new-admin-{n}", "password": PASSWORD, "admin": "yes"}, 303),
    ("/admin/users/outsider/admin", {"admin": "no"}, 303),
    ("/admin/project/restricted-proj/visibility", {"visibility": "restricted"}, 303),
    ("/admin/grants", {"project": "restricted-proj", "user": "reader", "role": "reader"}, 303),
    ("/admin/allowlists", {"cidr": "10.0.0.0/8", "user": "reader"}, 303),
    ("/admin/project/restricted-proj/yank", {"version": "1.0"}, 200),
    ("/admin/users/outsider/delete", {}, 200),
    ("/admin/upstream/protect", {"pattern": "acme-*"}, 303),
    ("/admin/upstream/project", {"name": "restricted-proj", "upstream": "deny"}, 303),
    ("/account/tokens", {"scope": "read"}, 200),
    (
        "/publishers/restricted-proj/",
        {
            "kind": "github",
            "repository": "o/r-{n}",
            "repository_owner_id": "1",
            "workflow": "r.yml",
        },
        303,
    ),
)
# Oracle 4: who manages a project's trusted publishers (issue 15); others see no project.
PUBLISHER_MANAGERS = {"admin", "owner"}


def expected_web_status(user: str, cred: str, ip: str, path: str, admin_status: int) -> int:
    if ip == "outside":
        return 403
    if cred in ("token-expired", "token-revoked"):
        return 401
    if cred != "password":
        return 403  # every token, whatever its scope, project list or owner
    if path.startswith("/account/"):
        return admin_status
    if path.startswith("/publishers/"):
        return admin_status if user in PUBLISHER_MANAGERS else 404
    return admin_status if user == "admin" else 403


@pytest.fixture(scope="module")
def web_matrix(tmp_path_factory) -> Matrix:
    return Matrix(tmp_path_factory.mktemp("web-matrix"))  # its own: admins change things here


WEB_CELLS = list(itertools.product(USERS, CREDS, IPS))


@pytest.mark.parametrize(("user", "cred", "ip"), WEB_CELLS)
def test_web_management_cell(web_matrix: Matrix, user: str, cred: str, ip: str) -> None:
    client = web_matrix.app.test_client()
    inside = {"REMOTE_ADDR": IPS["inside"]}
    # An attacker holding a token first gets a CSRF token of an anonymous session (the login
    # page hands one out), then sends the forms with the token as Basic auth.
    csrf = CSRF_RE.search(client.get("/login", environ_base=inside).get_data(as_text=True))
    assert csrf is not None
    auth = web_matrix.auth(user, cred)
    environ = {"REMOTE_ADDR": IPS[ip]}
    for path in WEB_GETS:
        response = client.get(path, auth=auth, environ_base=environ)
        want = expected_web_status(user, cred, ip, path, 200)
        assert response.status_code == want, (path, response.status)
        _assert_no_session_for_tokens(response, cred)
    for n, (path, form, admin_status) in enumerate(WEB_POSTS):
        data = {key: value.format(n=f"{user}-{cred}-{ip}-{n}") for key, value in form.items()}
        response = client.post(
            path, auth=auth, environ_base=environ, data={**data, "csrf_token": csrf.group(1)}
        )
        want = expected_web_status(user, cred, ip, path, admin_status)
        assert response.status_code == want, (path, response.status)
        _assert_no_session_for_tokens(response, cred)
    if cred.startswith("token") and ip == "inside":
        assert web_matrix.db.get_user(f"new-admin-{user}-{cred}-{ip}-0") is None


def _assert_no_session_for_tokens(response, cred: str) -> None:
    """A token's request never yields a browser session: no cookie, no CSRF token."""
    if cred == "password":
        return
    assert "Set-Cookie" not in response.headers, response.headers["Set-Cookie"]
    found = CSRF_RE.search(response.get_data(as_text=True))
    assert found is None or found.group(1) == "", "a CSRF token was handed to a token"


def test_web_matrix_covers_every_combination() -> None:
    assert len(WEB_CELLS) == 5 * 6 * 2
    assert len(WEB_GETS) + len(WEB_POSTS) == 21


# -- reading an upstream project (issue 13) -------------------------------------------------------
# Oracle 5: a project only upstream has reads like a team project that exists here (oracle 1),
# page, file and .metadata alike. Each request is sent twice: the first verifies the login
# (Flask), the second may be answered by the hot path (cached page and file).
UPSTREAM_CELLS = list(itertools.product(USERS, CREDS, IPS))


@pytest.fixture(scope="module")
def upstream_matrix(tmp_path_factory) -> Iterator[tuple[Matrix, dict[str, str]]]:
    from upstream_support import running_upstream

    with running_upstream() as fake:
        wheel = fake.publish(tmp_path_factory.mktemp("up"), "pub-proj", "1.0")
        matrix = Matrix(tmp_path_factory.mktemp("upstream-matrix"), upstream=fake.url)
        paths = {
            "page": "/simple/pub-proj/",
            "file": f"/files/pub-proj/{wheel.filename}",
            "metadata": f"/files/pub-proj/{wheel.filename}.metadata",
        }
        yield matrix, paths


@pytest.mark.parametrize(("user", "cred", "ip"), UPSTREAM_CELLS)
def test_upstream_read_cell(upstream_matrix, user: str, cred: str, ip: str) -> None:
    matrix, paths = upstream_matrix
    for endpoint, path in paths.items():
        want = expected_status(user, cred, "team", ip, endpoint)
        for attempt in ("first", "again"):
            response = matrix.client.get(
                path, auth=matrix.auth(user, cred), environ_base={"REMOTE_ADDR": IPS[ip]}
            )
            response.get_data()
            response.close()
            assert response.status_code == want, (endpoint, attempt, response.status)


def test_upstream_matrix_covers_every_combination() -> None:
    assert len(UPSTREAM_CELLS) == len(USERS) * len(CREDS) * len(IPS) == 60


# -- reading over a socket (issue 13) ------------------------------------------------------------
# Oracles 1 and 3 again for the listing and the page, through a real waitress that trusts
# loopback as its proxy (X-Forwarded-For carries the cell's address), so page hits are
# answered on waitress' socket thread (ops/serving.py). Each request is sent twice: the
# first verifies the login (on a worker thread), the second is a socket-thread hit exactly
# when the cell reads 200; every refusal still comes from Flask, a worker thread's. Both
# servers: create_app's, and `serve`'s own stack (boot.py), whose hot path verifies a new
# login and renders pages itself while Flask loads (issue 14).


@pytest.fixture(scope="module", params=["create_app", "serve"])
def wire_matrix(request, tmp_path_factory) -> Iterator[tuple[Matrix, str, list[object]]]:
    matrix = Matrix(tmp_path_factory.mktemp("wire-matrix"), trusted_proxy="127.0.0.1")
    if request.param == "create_app":
        live, running = start_server(matrix.app, matrix.settings)
        url = live.url
    else:
        url, running = start_cold_server(matrix.settings)
    yield matrix, url, worker_tasks(running)
    running.stop()


def wire_get(url: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(("user", "cred", "visibility", "ip"), CELLS)
def test_wire_read_cell(wire_matrix, user: str, cred: str, visibility: str, ip: str) -> None:
    matrix, url, tasks = wire_matrix
    headers = basic(*matrix.auth(user, cred)) | {"X-Forwarded-For": IPS[ip]}
    for endpoint, path in (("root", "/simple/"), ("page", f"/simple/{visibility}-proj/")):
        want = expected_status(user, cred, visibility, ip, endpoint)
        for attempt in ("first", "again"):
            before = len(tasks)
            status, body = wire_get(url, path, headers)
            assert status == want, (endpoint, attempt, body[:200])
            if endpoint == "root" and want == 200:
                listed = f'href="{visibility}-proj/"' in body
                assert listed == expected_listed(user, cred, visibility), attempt
            if attempt == "again":
                on_socket_thread = len(tasks) == before
                assert on_socket_thread == (want == 200), (endpoint, status)
