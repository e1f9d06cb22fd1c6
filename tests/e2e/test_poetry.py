"""poetry end to end: build real projects, publish them, then add them to another project
from the index as an explicit source (PROTOCOL.md sections 7.2 and 8.3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomllib
from tools import client, isolated_env, output, run

from .conftest import Index, hashes_of

pytestmark = pytest.mark.e2e

PROJECT = """\
[project]
name = "{name}"
version = "1.0.0"
description = "{name}, built by poetry for the end-to-end tests"
requires-python = ">=3.9"
dependencies = [{dependencies}]

[build-system]
requires = ["poetry-core>=2.0.0,<3.0.0"]
build-backend = "poetry.core.masonry.api"

[tool.poetry]
packages = [{{include = "{module}", from = "src"}}]
"""

CONSUMER = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = []

[tool.poetry]
package-mode = false
"""


def make_poetry_project(root: Path, name: str, dependencies: str = "") -> Path:
    module = name.replace("-", "_")
    project = root / name
    (project / "src" / module).mkdir(parents=True)
    (project / "src" / module / "__init__.py").write_text(f'NAME = "{name}"\n')
    (project / "pyproject.toml").write_text(
        PROJECT.format(name=name, module=module, dependencies=dependencies)
    )
    return project


@pytest.fixture(scope="module")
def poetry_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """team-core, and team-app which depends on it, each built by `poetry build` (poetry's
    bundled poetry-core: no download)."""
    poetry = client("poetry")
    root = tmp_path_factory.mktemp("poetry-projects")
    env = isolated_env(root)
    projects = {
        "team-core": make_poetry_project(root, "team-core"),
        "team-app": make_poetry_project(root, "team-app", '"team-core>=1.0"'),
    }
    for project in projects.values():
        run([poetry, "build"], env=env, cwd=project)
    return projects


def dists(project: Path) -> list[Path]:
    return sorted((project / "dist").iterdir())


def test_poetry_publish_then_add_from_explicit_source(
    index: Index, env: dict[str, str], tmp_path: Path, poetry_projects: dict[str, Path]
) -> None:
    poetry = client("poetry")
    # Publishing: the repository and its credentials from the environment only.
    publish_env = env | {
        "POETRY_REPOSITORIES_TEAM_URL": index.upload_url,
        "POETRY_HTTP_BASIC_TEAM_USERNAME": index.user,
        "POETRY_HTTP_BASIC_TEAM_PASSWORD": index.password,
    }
    for name, project in poetry_projects.items():
        run([poetry, "publish", "-r", "team"], env=publish_env, cwd=project)
        assert index.files(name) == hashes_of(dists(project))
    # An identical re-publish is accepted (200), as twine's is.
    run([poetry, "publish", "-r", "team"], env=publish_env, cwd=poetry_projects["team-core"])
    # A rebuild with other content has the same filenames: refused, or skipped on request.
    changed = shutil.copytree(poetry_projects["team-core"], tmp_path / "team-core-changed")
    (changed / "src" / "team_core" / "__init__.py").write_text('NAME = "changed"\n')
    run([poetry, "build", "--clean"], env=publish_env, cwd=changed)
    result = run([poetry, "publish", "-r", "team"], env=publish_env, cwd=changed, check=False)
    assert result.returncode != 0
    assert "File already exists" in output(result)
    result = run([poetry, "publish", "-r", "team", "--skip-existing"], env=publish_env, cwd=changed)
    assert output(result).count("File exists. Skipping") == 2, output(result)
    assert index.files("team-core") == hashes_of(dists(poetry_projects["team-core"]))

    # Consuming: the same name "team" is now a source; http-basic.team covers it.
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "pyproject.toml").write_text(CONSUMER)
    consume_env = env | {
        "POETRY_HTTP_BASIC_TEAM_USERNAME": index.user,
        "POETRY_HTTP_BASIC_TEAM_PASSWORD": index.password,
    }
    run(
        [poetry, "source", "add", "team", index.simple_url, "--priority", "explicit"],
        env=consume_env,
        cwd=consumer,
    )
    # An explicit source is used only for dependencies that name it, and a transitive
    # dependency never inherits its parent's source (poetry #2610, PROTOCOL.md 8.3): so
    # team-core is declared with the source too. `supplemental` would avoid that, but then
    # poetry asks PyPI first for every private name (slow, and a dependency-confusion risk).
    result = run(
        [poetry, "add", "--source", "team", "team-app", "team-core"],
        env=consume_env,
        cwd=consumer,
        timeout=300,
    )
    assert "Installing team-app (1.0.0)" in output(result)

    lock = tomllib.loads((consumer / "poetry.lock").read_text())
    locked = {package["name"]: package for package in lock["package"]}
    assert set(locked) == {"team-app", "team-core"}
    for name, package in locked.items():
        assert package["version"] == "1.0.0"
        assert package["source"] == {
            "type": "legacy",
            "url": index.simple_url.rstrip("/"),  # poetry drops the slash
            "reference": "team",
        }
        hashes = {entry["file"]: entry["hash"] for entry in package["files"]}
        expected = hashes_of(dists(poetry_projects[name]))
        assert hashes == {filename: f"sha256:{digest}" for filename, digest in expected.items()}
    assert locked["team-app"]["dependencies"] == {"team-core": ">=1.0"}

    # The install really happened, through authenticated downloads of the files.
    run(
        [consumer / ".venv" / "bin" / "python", "-c", "import team_app, team_core"],
        env=env,
    )
    assert index.log.find("GET", 200, contains="/files/team-app/team_app-1.0.0")
    # Dependencies came from the PEP 658 files (no lazy-wheel range requests needed).
    assert index.log.find("GET", 200, contains="team_app-1.0.0-py3-none-any.whl.metadata")
    assert not index.log.find("GET", 401, contains="/simple/team-")
