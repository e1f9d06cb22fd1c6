"""The front-server pieces without nginx: the setting, the X-Accel-Redirect answer, the
check nginx asks, and `teamindex nginx-config`'s refusals (tests/e2e/test_nginx_front.py
runs them with real nginx)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import make_wheel
from conftest import add_token, basic
from flask import Flask
from ops_support import run_cli
from uploading import upload

from teamindex.config import load_settings

ACCEL = "/_protected/"


@pytest.mark.parametrize("value", ["_protected/", "/_protected", "/a b/", "/../", "//", "/x/../"])
def test_accel_redirect_must_be_a_location_prefix(value: str) -> None:
    with pytest.raises(ValueError, match="TEAMINDEX_ACCEL_REDIRECT"):
        load_settings(environ={"TEAMINDEX_ACCEL_REDIRECT": value})


def test_accel_redirect_setting() -> None:
    assert load_settings(environ={}).accel_redirect == ""
    assert load_settings(environ={"TEAMINDEX_ACCEL_REDIRECT": ACCEL}).accel_redirect == ACCEL


@pytest.fixture
def fronted(make_app, tmp_path: Path) -> tuple[Flask, str]:
    app = make_app(accel_redirect=ACCEL)
    wheel = make_wheel(tmp_path, "team-core", "1.0")
    assert upload(app.test_client(), wheel, "alice").status_code == 200
    return app, f"/files/team-core/{wheel.name}"


def test_a_checked_download_names_the_file_for_nginx(fronted: tuple[Flask, str]) -> None:
    app, url = fronted
    http = app.test_client()
    answer = http.get(url, headers=basic("alice"))
    assert answer.status_code == 200
    assert answer.data == b""
    assert answer.headers["X-Accel-Redirect"] == ACCEL + url.removeprefix("/files/")
    assert answer.headers["ETag"].startswith('"') and answer.headers["Last-Modified"]
    assert "Content-Range" not in answer.headers
    ranged = http.get(url, headers={**basic("alice"), "Range": "bytes=0-9"})
    assert ranged.headers["X-Teamindex-Ranges"] == "bytes" and ranged.data == b""
    # Refusals and 304s are still answered here, never handed to nginx.
    etag = answer.headers["ETag"]
    with http.get(url, headers={**basic("alice"), "If-None-Match": etag}) as same:
        assert same.status_code == 304 and "X-Accel-Redirect" not in same.headers
    for headers in ({}, basic("alice", "wrong"), basic("nobody")):
        refused = http.get(url, headers=headers)
        assert refused.status_code == 401 and "X-Accel-Redirect" not in refused.headers


def test_the_check_says_yes_only_to_basic_credentials_that_may_read(
    fronted: tuple[Flask, str],
) -> None:
    app, url = fronted
    http = app.test_client()
    check = "/_accel" + url
    yes = http.get(check, headers=basic("alice"))
    assert yes.status_code == 204
    assert yes.headers["X-Teamindex-File"] == url.removeprefix("/files/")
    _id, limited = add_token(app, "alice", scope="read", projects=["other"])
    for headers in (
        {},  # a web session or nothing: nginx keys on Authorization, so never a yes
        basic("alice", "wrong"),
        basic("nobody"),
        basic("__token__", limited),
    ):
        assert http.get(check, headers=headers).status_code == 403
    assert (
        http.get(
            "/_accel/files/team-core/nope-1.0-py3-none-any.whl", headers=basic("alice")
        ).status_code
        == 403
    )
    assert (
        http.get("/_accel/files/other/" + url.rsplit("/", 1)[1], headers=basic("alice")).status_code
        == 403
    )


def test_without_the_setting_there_is_no_check(client) -> None:
    assert (
        client.get("/_accel/files/a/a-1.0-py3-none-any.whl", headers=basic("alice")).status_code
        == 403
    )


def test_nginx_config_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    half = run_cli(data, "nginx-config", "--tls-cert", "/x.crt")
    assert half.returncode == 1 and "--tls-cert and --tls-key go together" in half.stderr
    negative = run_cli(data, "nginx-config", "--cache-seconds", "-1")
    assert negative.returncode == 1
    plain = run_cli(data, "nginx-config")
    assert plain.returncode == 0
    assert "serve needs --accel-redirect" in plain.stderr
    assert "serve needs --trusted-proxy" in plain.stderr
    assert "location /_protected/ {\n        internal;" in plain.stdout
    tls = run_cli(data, "nginx-config", "--tls-cert", "/c.pem", "--tls-key", "/k.pem")
    assert "listen 443 ssl;" in tls.stdout and "ssl_certificate_key /k.pem;" in tls.stdout
    audited = run_cli(data, "nginx-config", "--audit-downloads", "true")
    assert "proxy_cache teamindex_auth" not in audited.stdout  # every download recorded
