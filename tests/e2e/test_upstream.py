"""pip, uv and poetry with teamindex as their ONLY index, proxying a PEP 691 index on
loopback (issue 13): mixed private and public dependencies, dependency confusion, cooldown,
an upstream outage and a tampered upstream file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import tomllib
from builders import make_wheel
from conftest import PASSWORD, LiveServer, start_server
from flask import Flask
from tools import client, output, run, uv
from upstream_support import FakeUpstream, running_upstream

from .conftest import seed

pytestmark = pytest.mark.e2e


@dataclass
class Proxied:
    app: Flask
    live: LiveServer
    upstream: FakeUpstream


@pytest.fixture
def proxied(make_app: Callable[..., Flask]) -> Iterator[Proxied]:
    with running_upstream() as fake:
        app = make_app(upstream=fake.url)
        live, running = start_server(app, app.extensions["teamindex"].settings)
        try:
            yield Proxied(app, live, fake)
        finally:
            running.stop()


def install(installer: str, python: Path, index_url: str, *args: str) -> list[object]:
    if installer == "pip":
        return [client("pip"), "--python", python, "install", "--index-url", index_url, *args]
    return [uv(), "pip", "install", "--python", python, "--index-url", index_url, *args]


def versions(python: Path, env: dict[str, str], *modules: str) -> list[str]:
    code = "; ".join(f"import {m}; print({m}.__version__)" for m in modules)
    return run([python, "-c", code], env=env).stdout.split()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_private_and_public_dependencies_from_one_url(
    installer: str, proxied: Proxied, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    proxied.upstream.publish(tmp_path / "up", "pubdep", "2.0")
    # The recommended set-up: the team's prefix is protected, so its names never go upstream
    # (not even the first upload's "does upstream have it?" check).
    proxied.app.extensions["teamindex"].db.set_protected("team-*", True)
    seed(proxied.app, make_wheel(tmp_path, "team-app", "1.0", requires_dist=["pubdep>=2"]))
    run(install(installer, venv_python, proxied.live.index_url(), "team-app"), env=env)
    assert versions(venv_python, env, "team_app", "pubdep") == ["1.0", "2.0"]
    # The installer only ever talked to teamindex; upstream saw the public name only.
    assert proxied.upstream.count("team-app") == 0
    assert proxied.upstream.seen.count("/files/pubdep-2.0-py3-none-any.whl") == 1


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_dependency_confusion_installs_the_private_project(
    installer: str, proxied: Proxied, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    proxied.upstream.publish(tmp_path / "up", "acme-utils", "99.0")
    proxied.app.extensions["teamindex"].db.set_protected("acme-*", True)
    seed(proxied.app, make_wheel(tmp_path, "acme-utils", "1.0"))
    run(install(installer, venv_python, proxied.live.index_url(), "acme-utils"), env=env)
    assert versions(venv_python, env, "acme_utils") == ["1.0"]
    assert proxied.upstream.count("acme") == 0


def test_young_release_is_skipped_until_the_project_is_exempted(
    proxied: Proxied, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    proxied.upstream.publish(tmp_path / "up", "fresh", "1.0", age=timedelta(days=30))
    proxied.upstream.publish(tmp_path / "up", "fresh", "2.0", age=timedelta(hours=1))
    run(install("uv", venv_python, proxied.live.index_url(), "fresh"), env=env)
    assert versions(venv_python, env, "fresh") == ["1.0"]
    proxied.app.extensions["teamindex"].db.set_upstream_rule("fresh", {"min_age": 0})
    run(install("pip", venv_python, proxied.live.index_url(), "--upgrade", "fresh"), env=env)
    assert versions(venv_python, env, "fresh") == ["2.0"]


def test_upstream_down_cached_projects_still_install(
    proxied: Proxied, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    proxied.upstream.publish(tmp_path / "up", "pubdep", "2.0")
    run(install("uv", venv_python, proxied.live.index_url(), "pubdep"), env=env)
    proxied.upstream.fail = 503  # upstream is down; the page is due for revalidation
    proxied.app.extensions["teamindex"].upstream.pages.ttl = 0
    second = tmp_path / "second"
    run([uv(), "venv", "--quiet", second], env=env)
    python = second / "bin" / "python"
    run(install("pip", python, proxied.live.index_url(), "pubdep"), env=env)
    assert versions(python, env, "pubdep") == ["2.0"]


def test_a_tampered_upstream_file_is_refused(
    proxied: Proxied, env: dict[str, str], venv_python: Path, tmp_path: Path
) -> None:
    wheel = proxied.upstream.publish(tmp_path / "up", "pubdep", "2.0")
    proxied.upstream.tamper.add(wheel.filename)
    proxied.upstream.tamper.add("nothing")  # .metadata stays honest: pip gets to the wheel
    proxied.upstream.projects["pubdep"][0].metadata = None  # no PEP 658: download the wheel
    result = run(
        install("pip", venv_python, proxied.live.index_url(), "pubdep"), env=env, check=False
    )
    assert result.returncode != 0
    assert "pubdep" not in run([venv_python, "-m", "pip", "list"], env=env, check=False).stdout
    assert proxied.app.extensions["teamindex"].upstream.files.status().files == 0
    print(output(result))


POETRY_CONSUMER = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = []

[tool.poetry]
package-mode = false
"""


def test_poetry_with_teamindex_as_its_only_source(
    proxied: Proxied, env: dict[str, str], tmp_path: Path
) -> None:
    """poetry with one primary source (which turns its implicit PyPI off) and no explicit
    ones: a private project with a public and a private dependency resolves and installs,
    and the private name upstream also has (at 99.0) comes from here, at 1.0."""
    up = tmp_path / "up"
    proxied.upstream.publish(up, "pubdep", "2.0")
    proxied.upstream.publish(up, "acme-utils", "99.0")  # the dependency-confusion bait
    db = proxied.app.extensions["teamindex"].db
    db.set_protected("team-*", True)
    db.set_protected("acme-*", True)
    seed(
        proxied.app,
        make_wheel(tmp_path, "acme-utils", "1.0"),
        make_wheel(tmp_path, "team-app", "1.0", requires_dist=["pubdep>=2", "acme-utils>=1"]),
    )
    poetry = client("poetry")
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "pyproject.toml").write_text(POETRY_CONSUMER)
    team_env = env | {
        "POETRY_HTTP_BASIC_TEAM_USERNAME": "alice",
        "POETRY_HTTP_BASIC_TEAM_PASSWORD": PASSWORD,
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
    }
    index_url = proxied.live.index_url(user=None)
    run([poetry, "source", "add", "team", index_url, "--priority", "primary"], env=team_env,
        cwd=consumer)  # fmt: skip
    result = run([poetry, "add", "team-app"], env=team_env, cwd=consumer, timeout=300)
    assert "Installing team-app (1.0)" in output(result), output(result)
    lock = tomllib.loads((consumer / "poetry.lock").read_text())
    locked = {package["name"]: package for package in lock["package"]}
    assert {name: package["version"] for name, package in locked.items()} == {
        "team-app": "1.0",
        "pubdep": "2.0",
        "acme-utils": "1.0",
    }
    for package in locked.values():  # every package from the one URL
        assert package["source"]["url"] == index_url.rstrip("/")
    python = consumer / ".venv" / "bin" / "python"
    assert versions(python, env, "team_app", "pubdep", "acme_utils") == ["1.0", "2.0", "1.0"]
    assert proxied.upstream.count("acme") == 0
    assert proxied.upstream.count("team-app") == 0
