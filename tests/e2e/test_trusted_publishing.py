"""Trusted publishing end to end (issue 15): the real uv, as in a GitHub Actions job, gets
its OIDC token from the runner's token URL (here the test issuer's), trades it at teamindex
over https on loopback (a throwaway CA from trustme, SSL_CERT_FILE for uv) and uploads;
twine uploads with a minted token too."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import LiveServer
from oidc_support import REQUEST_TOKEN, Issuer, github_claims, running_issuer, tls_proxy
from ops_support import run_cli
from tools import client, output, run, uv

from teamindex.config import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    with running_issuer(tmp_path) as running:
        yield running


@pytest.fixture
def settings(settings: Settings, issuer: Issuer) -> Settings:
    return replace(settings, oidc_ca_file=issuer.ca_file)


@pytest.fixture
def https_url(live_server: LiveServer, issuer: Issuer) -> Iterator[str]:
    with tls_proxy(issuer.ca, int(live_server.url.rsplit(":", 1)[1])) as url:
        yield url


def register(live_server: LiveServer, issuer: Issuer, project: str) -> None:
    result = run_cli(
        live_server.settings.data_dir,
        "publisher",
        "add",
        project,
        "github",
        "--issuer",
        issuer.url,
        "--repository",
        "octo-org/octo-repo",
        "--repository-owner-id",
        "1234567",
        "--workflow",
        "release.yml",
        "--environment",
        "pypi",
        "--user",
        "root",
    )
    assert result.returncode == 0, result.stderr


def stored(live_server: LiveServer, name: str) -> list[str]:
    db = live_server.app.extensions["teamindex"].db
    project = db.get_project(name)
    return [] if project is None else [f.filename for f in db.project_files(project)]


def minted_events(live_server: LiveServer) -> list:
    db = live_server.app.extensions["teamindex"].db
    return db.query_audit(since="2000-01-01", action="oidc_mint")


def uv_publish_in_ci(
    env: dict[str, str], issuer: Issuer, https_url: str, dist: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`uv publish --trusted-publishing always` as in a GitHub Actions job: uv asks the
    test issuer for its OIDC token through the ACTIONS_ID_TOKEN_REQUEST_* variables."""
    ci_env = env | {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{issuer.url}/ci-token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
        "SSL_CERT_FILE": str(issuer.ca_file),
    }
    publish = [uv(), "publish", "--trusted-publishing", "always"]
    return run([*publish, "--publish-url", f"{https_url}/legacy/", dist], env=ci_env, check=check)


def test_uv_publish_with_trusted_publishing_over_https(
    live_server: LiveServer, issuer: Issuer, https_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    register(live_server, issuer, "octo-app")
    dist = make_wheel(tmp_path, "octo-app", "1.0.0")
    result = uv_publish_in_ci(env, issuer, https_url, dist)
    assert "::add-mask::tix_" in output(result)  # uv masks the minted token in the job log
    assert stored(live_server, "octo-app") == [dist.name]
    (event,) = minted_events(live_server)
    assert event.outcome == "ok" and event.project == "octo-app" and event.user == "root"
    # uv asked the audience the index announces, and the issuer's token URL with it.
    assert any(
        path.startswith("/ci-token?api-version=2.0&audience=teamindex-") for path in issuer.requests
    )


def test_uv_shows_the_refusal_naming_the_failed_check(
    live_server: LiveServer, issuer: Issuer, https_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    register(live_server, issuer, "octo-app")
    issuer.token_claims = {"environment": "staging"}
    wheel = make_wheel(tmp_path, "octo-app", "1.0.0")
    result = uv_publish_in_ci(env, issuer, https_url, wheel, check=False)
    assert result.returncode != 0
    assert "invalid-publisher" in output(result) and "environment" in output(result)


def test_twine_uploads_with_a_minted_token(
    live_server: LiveServer, issuer: Issuer, https_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    register(live_server, issuer, "octo-app")
    context = ssl.create_default_context(cafile=str(issuer.ca_file))
    audience = json.load(urllib.request.urlopen(f"{https_url}/_/oidc/audience", context=context))
    ci_token = issuer.sign(github_claims(issuer.url, audience["audience"]))
    request = urllib.request.Request(
        f"{https_url}/_/oidc/github/mint-token",  # where gh-action-pypi-publish posts
        data=json.dumps({"token": ci_token}).encode(),
        headers={"Content-Type": "application/json"},
    )
    minted = json.load(urllib.request.urlopen(request, context=context))
    dist = make_wheel(tmp_path, "octo-app", "2.0.0")
    run(
        [
            client("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            f"{https_url}/legacy/",
            "--cert",
            issuer.ca_file,
            "-u",
            "__token__",
            "-p",
            minted["token"],
            dist,
        ],
        # requests lets REQUESTS_CA_BUNDLE from the environment override --cert.
        env=env | {"REQUESTS_CA_BUNDLE": str(issuer.ca_file)},
    )
    assert stored(live_server, "octo-app") == [dist.name]
