"""Trusted publishing (issue 15) through the Flask test client, against a local OIDC issuer
over https: what mints, and every way a token is refused, each with the check it failed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest
from builders import make_wheel
from conftest import USERS, add_user, basic
from flask import Flask
from flask.testing import FlaskClient
from oidc_support import Issuer, github_claims, gitlab_claims, running_issuer
from ops_support import run_cli
from uploading import upload

from teamindex.access.oidc.exchange import MAX_MINTED_SECONDS
from teamindex.app import create_app
from teamindex.config import Settings

OWNER_ID = "1234567"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture
def oidc_app(settings: Settings, issuer: Issuer) -> Iterator[Flask]:
    app = create_app(replace(settings, oidc_ca_file=issuer.ca_file))
    app.config["TESTING"] = True
    for name, admin in USERS.items():
        add_user(app, name, admin=admin)
    yield app
    app.extensions["teamindex"].db.close()


@pytest.fixture
def client(oidc_app: Flask) -> FlaskClient:
    return oidc_app.test_client()


def audience(client: FlaskClient) -> str:
    return client.get("/_/oidc/audience").get_json()["audience"]


def cli(app: Flask, *args: str) -> str:
    result = run_cli(services_of(app).settings.data_dir, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def services_of(app: Flask) -> Any:
    return app.extensions["teamindex"]


def github_publisher(
    app: Flask, issuer: Issuer, project: str = "octo-app", user: str = "root", *extra: str
) -> None:
    cli(
        app,
        "publisher",
        "add",
        project,
        "github",
        "--issuer",
        issuer.url,
        "--repository",
        "octo-org/octo-repo",
        "--repository-owner-id",
        OWNER_ID,
        "--workflow",
        "release.yml",
        "--user",
        user,
        *extra,
    )


def mint(client: FlaskClient, token: str, path: str = "/_/oidc/mint-token") -> Any:
    return client.post(path, data=json.dumps({"token": token}), content_type="application/json")


def refusal(response: Any) -> str:
    assert response.status_code == 422, response.data
    body = response.get_json()
    assert body["message"] == "Token request failed"
    (error,) = body["errors"]
    return f"{error['code']}: {error['description']}"


def wheel(tmp_path: Path, name: str = "octo-app", version: str = "1.0") -> Path:
    (tmp_path / "dists").mkdir(exist_ok=True)
    return make_wheel(tmp_path / "dists", name, version)


def test_audience_is_stable_per_instance_and_configurable(client, make_app, settings, tmp_path):
    first = audience(client)
    assert first.startswith("teamindex-") and first == audience(client)
    other = make_app().test_client().get("/_/oidc/audience").get_json()["audience"]
    assert other != first  # another instance: tokens asked for one are refused by the other
    configured = create_app(replace(settings, data_dir=tmp_path / "c", oidc_audience="idx.example"))
    assert configured.test_client().get("/_/oidc/audience").get_json() == {
        "audience": "idx.example"
    }
    configured.extensions["teamindex"].db.close()


@pytest.mark.parametrize("path", ["/_/oidc/mint-token", "/_/oidc/github/mint-token"])
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_matching_github_token_mints_an_upload_token_that_uploads(
    oidc_app, client, issuer, tmp_path, path, alg
):
    github_publisher(oidc_app, issuer, "octo-app", "root", "--environment", "pypi")
    token = issuer.sign(github_claims(issuer.url, audience(client)), alg=alg)
    response = mint(client, token, path)
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["success"] is True and body["token"].startswith("tix_")
    # Pending publisher: the first upload creates the project, owned by the admin.
    assert (
        upload(
            client, wheel(tmp_path), headers=basic("__token__", body["token"]), user=None
        ).status_code
        == 200
    )
    db = services_of(oidc_app).db
    assert db.project_with_role("octo-app", db.get_user("root").id)[1] == "owner"
    # The next release through the same publisher: it now belongs to the project it created.
    again = mint(client, issuer.sign(github_claims(issuer.url, audience(client)), alg=alg), path)
    assert again.status_code == 200, again.data
    (publisher,) = db.list_publishers()
    assert not publisher.pending and publisher.project_id is not None
    minted = min(db.list_tokens(), key=lambda t: t.id)
    assert minted.scope == "upload" and minted.projects == ("octo-app",)
    lifetime = datetime.fromisoformat(minted.expires) - datetime.fromisoformat(minted.created)
    assert lifetime <= timedelta(seconds=MAX_MINTED_SECONDS)
    listing = cli(oidc_app, "token", "list")
    assert "trusted publishing: repository octo-org/octo-repo workflow release.yml" in listing
    assert "ref refs/tags/v1.0.0 run 2069436016" in listing
    event = db.query_audit(since="2000-01-01", action="oidc_mint")[0]
    assert event.token_id == minted.id and event.project == "octo-app"
    assert "run 2069436016" in event.detail


def test_a_minted_token_never_outlives_the_ci_token(oidc_app, client, issuer):
    github_publisher(oidc_app, issuer)
    soon = int(time.time()) + 120
    response = mint(client, issuer.sign(github_claims(issuer.url, audience(client), exp=soon)))
    expires = datetime.fromisoformat(response.get_json()["expires"])
    assert expires <= datetime.fromtimestamp(soon, timezone.utc)


def test_gitlab_publisher(oidc_app, client, issuer, tmp_path):
    cli(
        oidc_app,
        "publisher",
        "add",
        "my-app",
        "gitlab",
        "--issuer",
        issuer.url,
        "--project-path",
        "my-group/my-project",
        "--ci-config-ref-uri",
        "gitlab.example.com/my-group/my-project//.gitlab-ci.yml",
        "--environment",
        "pypi",
        "--user",
        "root",
    )
    aud = audience(client)
    ok = mint(client, issuer.sign(gitlab_claims(issuer.url, aud)))
    assert ok.status_code == 200, ok.data
    other_file = gitlab_claims(
        issuer.url, aud, ci_config_ref_uri="gitlab.example.com/my-group/my-project//other.yml@x"
    )
    assert refusal(mint(client, issuer.sign(other_file))).startswith(
        "invalid-publisher: ci_config_ref_uri"
    )
    other_env = gitlab_claims(issuer.url, aud, environment="staging")
    assert refusal(mint(client, issuer.sign(other_env))).startswith(
        "invalid-publisher: environment"
    )


def test_generic_publisher_needs_every_claim(oidc_app, client, issuer):
    cli(
        oidc_app,
        "publisher",
        "add",
        "forge-app",
        "oidc",
        "--issuer",
        issuer.url,
        "--claim",
        "repository=org/app",
        "--claim",
        "ref=refs/heads/main",
        "--user",
        "root",
    )
    aud = audience(client)
    base = {
        "iss": issuer.url,
        "aud": aud,
        "jti": "j1",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "repository": "org/app",
    }
    assert refusal(mint(client, issuer.sign(base | {"ref": "refs/heads/dev"}))).startswith(
        "invalid-publisher: ref"
    )
    assert mint(client, issuer.sign(base | {"ref": "refs/heads/main"})).status_code == 200


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def _hs256_with_public_key(issuer: Issuer, claims: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC "signed" with the issuer's public key as secret."""
    import hmac as hmac_module
    from hashlib import sha256

    from cryptography.hazmat.primitives import serialization

    pem = issuer.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _unsigned(claims, {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})[:-1]
    signature = hmac_module.new(pem, head.encode(), sha256).digest()
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def _forged(issuer: Issuer, claims: dict[str, Any]) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": "rsa-1"})


REFUSALS: list[tuple[str, Any, str]] = [
    ("wrong signature", lambda i, c: _forged(i, c), "invalid-token: signature"),
    ("alg none", lambda i, c: _unsigned(c, {"alg": "none", "kid": "rsa-1"}), "invalid-token: alg"),
    ("HS256 with public key", _hs256_with_public_key, "invalid-token: alg"),
    (
        "EC alg on RSA key",
        lambda i, c: jwt.encode(c, i.ec_key, algorithm="ES256", headers={"kid": "rsa-1"}),
        "invalid-token: alg",
    ),
    ("wrong aud", lambda i, c: i.sign(c | {"aud": "pypi"}), "invalid-token: aud"),
    (
        "no aud",
        lambda i, c: i.sign({k: v for k, v in c.items() if k != "aud"}),
        "invalid-token: aud",
    ),
    ("wrong iss", lambda i, c: i.sign(c | {"iss": "https://127.0.0.2"}), "invalid-publisher"),
    ("expired", lambda i, c: i.sign(c | {"exp": int(time.time()) - 120}), "invalid-token: exp"),
    (
        "not yet valid",
        lambda i, c: i.sign(c | {"nbf": int(time.time()) + 600}),
        "invalid-token: nbf",
    ),
    (
        "issued in the future",
        lambda i, c: i.sign(c | {"iat": int(time.time()) + 600}),
        "invalid-token: nbf",
    ),
    (
        "no jti",
        lambda i, c: i.sign({k: v for k, v in c.items() if k != "jti"}),
        "invalid-token: jti",
    ),
    ("unknown kid", lambda i, c: i.sign(c, kid="rotated-away"), "invalid-token: keys"),
    (
        "other repository",
        lambda i, c: i.sign(c | {"repository": "octo-org/other"}),
        "invalid-publisher: repository",
    ),
    (
        "re-registered owner",
        lambda i, c: i.sign(c | {"repository_owner_id": "999"}),
        "invalid-publisher: repository_owner_id",
    ),
    (
        "other workflow",
        lambda i, c: i.sign(
            c | {"job_workflow_ref": "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main"}
        ),
        "invalid-publisher: workflow",
    ),
    (
        "workflow named like a prefix",
        lambda i, c: i.sign(
            c | {"job_workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml.evil@x"}
        ),
        "invalid-publisher: workflow",
    ),
    (
        "other environment",
        lambda i, c: i.sign(c | {"environment": "staging"}),
        "invalid-publisher: environment",
    ),
    (
        "no environment",
        lambda i, c: i.sign({k: v for k, v in c.items() if k != "environment"}),
        "invalid-publisher: environment",
    ),
    ("garbage", lambda i, c: "not-a-jwt", "invalid-token: format"),
]


@pytest.mark.parametrize(("case", "make", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_tokens_name_the_failed_check(oidc_app, client, issuer, case, make, expected):
    github_publisher(oidc_app, issuer, "octo-app", "root", "--environment", "pypi")
    response = mint(client, make(issuer, github_claims(issuer.url, audience(client))))
    assert refusal(response).startswith(expected), case
    assert services_of(oidc_app).db.minted_details() == {}
    (event,) = services_of(oidc_app).db.query_audit(since="2000-01-01", action="oidc_mint")
    assert event.outcome == "denied"


@pytest.mark.parametrize(
    "body", [b"", b"{}", b"[]", b'{"token": 5}', b"not json", b'{"token": "' + b"a" * 70000 + b'"}']
)
def test_bad_payload_is_a_clear_422(client, body):
    response = client.post("/_/oidc/mint-token", data=body, content_type="application/json")
    assert refusal(response).startswith("invalid-payload")


def test_replayed_jti_is_refused(oidc_app, client, issuer):
    github_publisher(oidc_app, issuer)
    token = issuer.sign(github_claims(issuer.url, audience(client)))
    assert mint(client, token).status_code == 200
    assert refusal(mint(client, token)).startswith("invalid-token: jti")


def test_token_for_project_a_cannot_upload_project_b(oidc_app, client, issuer, tmp_path):
    cli(oidc_app, "project", "create", "octo-app", "--owner", "alice")
    cli(oidc_app, "project", "create", "octo-b", "--owner", "alice")
    github_publisher(oidc_app, issuer, "octo-app", "alice")
    secret = mint(client, issuer.sign(github_claims(issuer.url, audience(client)))).get_json()[
        "token"
    ]
    creds = basic("__token__", secret)
    refused = upload(client, wheel(tmp_path, "octo-b"), user=None, headers=creds)
    assert refused.status_code == 403 and "limited to projects octo-app" in refused.status
    new_name = upload(client, wheel(tmp_path, "brand-new"), user=None, headers=creds)
    assert new_name.status_code == 403
    assert upload(client, wheel(tmp_path), user=None, headers=creds).status_code == 200


def test_minted_token_is_dead_after_15_minutes(oidc_app, client, issuer, tmp_path):
    github_publisher(oidc_app, issuer)
    secret = mint(client, issuer.sign(github_claims(issuer.url, audience(client)))).get_json()[
        "token"
    ]
    db = services_of(oidc_app).db
    (token_id,) = db.minted_details()
    # 15 minutes and a second later: the row's expiry is what every check reads.
    with db.transaction() as conn:
        conn.execute(
            "UPDATE tokens SET expires = ? WHERE id = ?",
            ((datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat(), token_id),
        )
    response = upload(client, wheel(tmp_path), user=None, headers=basic("__token__", secret))
    assert response.status_code == 401 and "token expired" in response.status


def test_pending_publisher_taken_by_someone_else_is_refused(oidc_app, client, issuer, tmp_path):
    github_publisher(oidc_app, issuer, "octo-app", "root")
    assert upload(client, wheel(tmp_path), user="alice").status_code == 200  # alice was faster
    refused = mint(client, issuer.sign(github_claims(issuer.url, audience(client))))
    assert refusal(refused).startswith("invalid-publisher: project")
    assert "created by someone else" in refusal(refused)


def test_removing_a_publisher_revokes_its_live_tokens(oidc_app, client, issuer, tmp_path):
    github_publisher(oidc_app, issuer)
    secret = mint(client, issuer.sign(github_claims(issuer.url, audience(client)))).get_json()[
        "token"
    ]
    (publisher,) = services_of(oidc_app).db.list_publishers()
    cli(oidc_app, "publisher", "remove", str(publisher.id))
    response = upload(client, wheel(tmp_path), user=None, headers=basic("__token__", secret))
    assert response.status_code == 401 and "revoked" in response.status


def test_failed_exchanges_are_throttled_like_logins(make_app, issuer):
    app = make_app(oidc_ca_file=issuer.ca_file, throttle_ip_failures=3)
    client = app.test_client()
    for _ in range(3):
        assert mint(client, "not-a-jwt").status_code == 422
    response = mint(client, "not-a-jwt")
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_global_allowlist_applies_to_the_exchange(oidc_app, client):
    cli(oidc_app, "allow", "add", "10.0.0.0/8")
    assert mint(client, "not-a-jwt").status_code == 403
    assert client.get("/_/oidc/audience").status_code == 403


def test_only_owners_and_admins_register_and_pending_only_admins(oidc_app, issuer):
    data_dir = services_of(oidc_app).settings.data_dir
    args = [
        "github",
        "--issuer",
        issuer.url,
        "--repository",
        "o/r",
        "--repository-owner-id",
        "1",
        "--workflow",
        "r.yml",
    ]
    pending = run_cli(data_dir, "publisher", "add", "free-name", *args, "--user", "alice")
    assert pending.returncode == 1 and "only administrators" in pending.stderr
    cli(oidc_app, "project", "create", "owned", "--owner", "alice")
    cli(oidc_app, "grant", "bob", "owned", "maintainer")
    not_owner = run_cli(data_dir, "publisher", "add", "owned", *args, "--user", "bob")
    assert not_owner.returncode == 1 and "not an owner" in not_owner.stderr
    assert "publisher" in cli(oidc_app, "publisher", "add", "owned", *args, "--user", "alice")
    http = run_cli(
        data_dir,
        "publisher",
        "add",
        "owned",
        "oidc",
        "--issuer",
        "http://127.0.0.1:1",
        "--claim",
        "a=b",
        "--user",
        "root",
    )
    assert http.returncode == 1 and "https" in http.stderr
    listed = json.loads(cli(oidc_app, "publisher", "list", "--json"))
    assert [(p["project"], p["user_name"]) for p in listed] == [("owned", "alice")]


def test_static_jwks_file_needs_no_issuer_connection(make_app, issuer, tmp_path):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({issuer.url: issuer.jwks()}))
    app = make_app(oidc_jwks_file=jwks_file)  # no CA file: the issuer could not be reached
    client = app.test_client()
    github_publisher(app, issuer)
    issuer.requests.clear()
    response = mint(client, issuer.sign(github_claims(issuer.url, audience(client))))
    assert response.status_code == 200, response.data
    assert issuer.requests == []


def test_issuer_behind_an_untrusted_certificate_is_refused(make_app, issuer):
    app = make_app()  # the system's CAs only: the test CA is not among them
    client = app.test_client()
    github_publisher(app, issuer)
    response = mint(client, issuer.sign(github_claims(issuer.url, audience(client))))
    assert refusal(response).startswith("invalid-token: keys: cannot fetch")


def test_unknown_kid_refetches_at_most_once_a_minute(oidc_app, client, issuer):
    github_publisher(oidc_app, issuer)
    aud = audience(client)
    assert mint(client, issuer.sign(github_claims(issuer.url, aud))).status_code == 200
    issuer.requests.clear()
    for _ in range(3):
        refusal(mint(client, issuer.sign(github_claims(issuer.url, aud), kid="new-key")))
    assert issuer.requests == []  # fetched less than a minute ago: no stampede on the issuer
