"""The project page's install snippets, copied as printed and run in a fresh project, install
a private package whose private dependencies are two levels deep (issue 12, failure 2).

poetry passes no source on to transitive dependencies (poetry #2610) and uv honours an index
pin only for a direct dependency: the snippets only work if they name every private one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib
from conftest import add_token
from flask import Flask
from tools import client, isolated_env, run, uv
from web_support import snippets_of

from .conftest import Index, hashes_of, seed
from .test_poetry import make_poetry_project

pytestmark = pytest.mark.e2e

# Names nobody else uses: a snippet that let one of them fall through to PyPI must fail.
PRIVATE = ["tix-e2e-app", "tix-e2e-core", "tix-e2e-util"]
# Small, no dependencies: the uv project needs it too, to prove that public names still come
# from PyPI. (Not a dependency of the private ones: poetry reads PyPI's JSON API, which this
# test machine cannot reach.)
PUBLIC = "iniconfig"


@pytest.fixture(scope="module")
def private_dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """app -> core -> util, each built by `poetry build`."""
    poetry = client("poetry")
    root = tmp_path_factory.mktemp("snippet-projects")
    env = isolated_env(root)
    requires = {
        "tix-e2e-util": "",
        "tix-e2e-core": '"tix-e2e-util>=1.0"',
        "tix-e2e-app": '"tix-e2e-core>=1.0"',
    }
    built = {}
    for name, dependencies in requires.items():
        project = make_poetry_project(root, name, dependencies)
        run([poetry, "build"], env=env, cwd=project)
        built[name] = sorted((project / "dist").iterdir())
    return built


def printed_snippet(app: Flask, index: Index, private_dists: dict[str, list[Path]]) -> dict:
    seed(app, *(path for paths in private_dists.values() for path in paths))
    status, _headers, body = index.get("/project/tix-e2e-app/", accept="text/html")
    assert status == 200
    return snippets_of(body.decode())


def run_snippet(snippet: str, bin_dir: Path, cwd: Path, env: dict[str, str], token: str) -> str:
    """The snippet as printed, in bash, with the token where the page says to put it."""
    shell_env = env | {"TEAMINDEX_TOKEN": token, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    result = run(["bash", "-euo", "pipefail", "-c", snippet], env=shell_env, cwd=cwd, timeout=300)
    return result.stdout + result.stderr


def fresh_project(tmp_path: Path, extra: str = "", dependencies: str = "") -> Path:
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        f"dependencies = [{dependencies}]\n{extra}"
    )
    return consumer


def test_poetry_snippet_as_printed_installs_private_dependencies(
    app: Flask,
    index: Index,
    env: dict[str, str],
    tmp_path: Path,
    private_dists: dict[str, list[Path]],
) -> None:
    snippets = printed_snippet(app, index, private_dists)
    _id, token = add_token(app, "alice", scope="read")
    consumer = fresh_project(tmp_path, "\n[tool.poetry]\npackage-mode = false\n")
    run_snippet(snippets["poetry"], client("poetry").parent, consumer, env, token)

    lock = tomllib.loads((consumer / "poetry.lock").read_text())
    locked = {package["name"]: package for package in lock["package"]}
    assert set(locked) == set(PRIVATE)
    for name in PRIVATE:
        assert locked[name]["source"]["url"] == index.simple_url.rstrip("/")
        hashes = {entry["file"]: entry["hash"] for entry in locked[name]["files"]}
        assert hashes == {f: f"sha256:{d}" for f, d in hashes_of(private_dists[name]).items()}
    run([consumer / ".venv" / "bin" / "python", "-c", "import tix_e2e_app, tix_e2e_util"], env=env)


def test_uv_snippet_as_printed_pins_private_dependencies(
    app: Flask,
    index: Index,
    env: dict[str, str],
    tmp_path: Path,
    private_dists: dict[str, list[Path]],
) -> None:
    snippets = printed_snippet(app, index, private_dists)
    _id, token = add_token(app, "alice", scope="read")
    consumer = fresh_project(tmp_path, dependencies=f'"{PUBLIC}"')
    run_snippet(snippets["uv"], uv().parent, consumer, env, token)

    pyproject = tomllib.loads((consumer / "pyproject.toml").read_text())
    assert pyproject["tool"]["uv"]["index"] == [
        {"name": "team", "url": index.simple_url, "explicit": True}
    ]
    assert pyproject["tool"]["uv"]["sources"] == {name: {"index": "team"} for name in PRIVATE}
    lock = tomllib.loads((consumer / "uv.lock").read_text())
    locked = {package["name"]: package for package in lock["package"]}
    for name in PRIVATE:
        assert locked[name]["source"] == {"registry": index.simple_url}
        assert {w["hash"] for w in locked[name]["wheels"]} == {
            f"sha256:{d}" for f, d in hashes_of(private_dists[name]).items() if f.endswith(".whl")
        }
    assert locked[PUBLIC]["source"]["registry"] != index.simple_url
    # No credentials were written anywhere in the project.
    assert token not in (consumer / "pyproject.toml").read_text()
    assert token not in (consumer / "uv.lock").read_text()
    # A teammate's checkout: `uv lock` from the written pyproject, credentials as printed.
    (consumer / "uv.lock").unlink()
    credentials = next(line for line in snippets["uv"].splitlines() if line.startswith("export"))
    run_snippet(f"{credentials}\nuv lock", uv().parent, consumer, env, token)
    assert tomllib.loads((consumer / "uv.lock").read_text()) == lock
    run([consumer / ".venv" / "bin" / "python", "-c", "import tix_e2e_app, tix_e2e_util"], env=env)
