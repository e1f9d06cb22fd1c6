"""The front-server pieces without a running front: the setting, the X-Accel-Redirect
answer, the check nginx asks, and `teamindex nginx-config`'s and `caddy-config`'s output
and refusals (tests/e2e/test_front_servers.py runs them with real nginx and Caddy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from builders import make_wheel
from conftest import add_token, basic
from flask import Flask
from front_support import CADDY, require_caddy
from ops_support import run_cli
from uploading import upload

from teamindex.config import load_settings
from teamindex.ops.front_caddy import _split_listen

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
    assert answer.headers["X-Teamindex-File"] == url.removeprefix("/files/")  # for Caddy
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


@pytest.mark.parametrize(
    ("listen", "bind", "port"),
    [
        ("", "", "80"),
        ("8080", "", "8080"),
        ("127.0.0.1:8080", "127.0.0.1", "8080"),
        ("127.0.0.1", "127.0.0.1", "80"),
        ("[::1]:8443", "::1", "8443"),
        ("[::1]", "::1", "80"),
        ("::1", "::1", "80"),
    ],
)
def test_caddy_listen_is_read_as_nginx_reads_it(listen: str, bind: str, port: str) -> None:
    assert _split_listen(listen, "80") == (bind, port)


@pytest.mark.parametrize("listen", ["127.0.0.1:http", "1.2.3.4:0", "[::1]:", ":99999", "x:-1"])
def test_caddy_listen_without_a_port_number_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="is not a port"):
        _split_listen(listen, "80")


def test_caddy_config_refusals_and_notes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    half = run_cli(data, "caddy-config", "--tls-key", "/k.pem")
    assert half.returncode == 1 and "--tls-cert and --tls-key go together" in half.stderr
    bad = run_cli(data, "caddy-config", "--listen", "127.0.0.1:http")
    assert bad.returncode == 1 and "'http' is not a port" in bad.stderr
    braces = run_cli(tmp_path / "{x}", "caddy-config")
    assert braces.returncode == 1 and "a character Caddy cannot read" in braces.stderr
    plain = run_cli(data, "caddy-config")
    assert plain.returncode == 0
    assert "serve needs --accel-redirect" in plain.stderr
    assert "serve needs --trusted-proxy with Caddy's address" in plain.stderr
    assert plain.stdout.count("\n\t\t\tfile_server\n") == 2  # only inside handle_response
    assert "http://:80 {" in plain.stdout and "bind" not in plain.stdout
    assert f'root * "{(data / "packages").resolve()}"' in plain.stdout
    assert "max_size 1088MiB" in plain.stdout  # 1 GiB uploads + the form overhead


def caddy_variants(data: Path) -> dict[str, list[str]]:
    return {
        "plain": [],
        "tls": [
            "--server-name",
            "pypi.example.internal",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
        ],
        "names": ["--server-name", "a.example.internal b.example.internal", "--listen", "8080"],
        "ipv6": ["--listen", "[::1]:8443", "--port", "9000", "--host", "::1"],
        "spaces": ["--data-dir", str(data.parent / "a dir")],
    }


def test_every_caddy_config_variant_is_a_valid_caddyfile(tmp_path: Path) -> None:
    """Caddy's own adapter reads each printed variant without a warning (it warns, too,
    about anything `caddy fmt` would change); the e2e tests run the plain one."""
    require_caddy()
    data = tmp_path / "data"
    for name, flags in caddy_variants(data).items():
        printed = run_cli(data, "caddy-config", "--accel-redirect", ACCEL, *flags)
        assert printed.returncode == 0, printed.stderr
        site = tmp_path / f"{name}.caddy"
        site.write_text(printed.stdout)
        adapted = subprocess.run(
            [CADDY, "adapt", "--config", str(site), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert adapted.returncode == 0, (name, adapted.stderr)
        assert '"level":"warn"' not in adapted.stderr, (name, adapted.stderr)
        routes = json.loads(adapted.stdout)["apps"]["http"]["servers"]
        if name == "tls":
            assert "pypi.example.internal:443" in printed.stdout
            assert json.loads(adapted.stdout)["apps"]["tls"]["certificates"]["load_files"]
        if name == "ipv6":
            (server,) = routes.values()
            assert server["listen"] == ["[::1]:8443"] and "[::1]:9000" in printed.stdout


def test_the_readme_shows_the_printed_caddy_block(tmp_path: Path) -> None:
    """The README's Caddyfile is the command's output (up to the second handle_response,
    which it abbreviates), so it cannot drift from what the e2e tests run."""
    printed = run_cli(
        Path("/var/lib/teamindex"),
        "caddy-config",
        *("--server-name", "pypi.example.internal", "--port", "8080"),
        *("--tls-cert", "/etc/ssl/pypi.crt", "--tls-key", "/etc/ssl/pypi.key"),
        *("--accel-redirect", ACCEL, "--trusted-proxy", "127.0.0.1"),
    )
    assert printed.returncode == 0, printed.stderr
    block = printed.stdout[printed.stdout.index("https://") :]
    shown = block[: block.index("said 200")]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert shown in readme
