"""API tokens with the real clients: publish as `__token__` with twine, uv and poetry; install
with a read token through pip, uv and poetry; a read token is refused at upload."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import add_token
from flask import Flask
from tools import client, output, run, uv

from .conftest import Index, hashes_of, seed, twine_upload

pytestmark = pytest.mark.e2e


def make_token(app: Flask, scope: str, projects: tuple[str, ...] = ()) -> str:
    """A token of alice's; only its secret matters to the clients."""
    return add_token(app, "alice", scope=scope, projects=list(projects), note=f"e2e {scope}")[1]


def as_token(index: Index, secret: str) -> Index:
    """The same index, with the token as credentials (user __token__, PyPI's convention)."""
    return dataclasses.replace(index, user="__token__", password=secret)


def test_publish_with_upload_token_twine_and_uv(
    index: Index, app: Flask, env: dict[str, str], demo_dists: list[Path]
) -> None:
    secret = make_token(app, "upload", projects=("team-*",))
    wheel, sdist = demo_dists
    run(
        twine_upload(as_token(index, secret), sdist),
        env=env,
    )
    run([uv(), "publish", "--publish-url", index.upload_url, "--token", secret, wheel], env=env)
    assert index.files("team-demo") == hashes_of(demo_dists)
    # The uploads were made by the token's owner, who now owns the project.
    db = app.extensions["teamindex"].db
    project, role = db.project_with_role("team-demo", db.get_user("alice").id)
    assert project is not None
    assert role == "owner"
    events = db.query_audit(since="2000", action="upload")
    assert {(e.user, e.token_id is not None, e.outcome) for e in events} == {
        ("alice", True, "stored")
    }


def test_read_token_cannot_publish(
    index: Index, app: Flask, env: dict[str, str], demo_dists: list[Path]
) -> None:
    secret = make_token(app, "read")
    result = run(
        twine_upload(as_token(index, secret), demo_dists[0]),
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "403" in output(result)
    assert "This token (id 1, scope read) cannot upload" in output(result)  # issue 12
    status, _headers, _body = index.get("/simple/team-demo/")
    assert status == 404


def test_poetry_publish_with_pypi_token_variable(
    index: Index, app: Flask, env: dict[str, str], tmp_path: Path, demo_dists: list[Path]
) -> None:
    """POETRY_PYPI_TOKEN_<NAME> makes poetry send user __token__ (PROTOCOL.md 7.2)."""
    secret = make_token(app, "upload")
    project = tmp_path / "team-demo"
    (project / "dist").mkdir(parents=True)
    for dist in demo_dists:
        (project / "dist" / dist.name).write_bytes(dist.read_bytes())
    (project / "pyproject.toml").write_text(
        '[project]\nname = "team-demo"\nversion = "0.1.0"\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    publish_env = env | {
        "POETRY_REPOSITORIES_TEAM_URL": index.upload_url,
        "POETRY_PYPI_TOKEN_TEAM": secret,
    }
    run([client("poetry"), "publish", "-r", "team"], env=publish_env, cwd=project)
    assert index.files("team-demo") == hashes_of(demo_dists)


def test_install_with_read_token_pip_uv_poetry(
    index: Index,
    app: Flask,
    env: dict[str, str],
    tmp_path: Path,
    demo_dists: list[Path],
    venv_python: Path,
) -> None:
    seed(app, *demo_dists)
    secret = make_token(app, "read")
    # pip: the token in the index URL
    token_url = index.auth_url("__token__", secret)
    target = tmp_path / "pip-target"
    run(
        [
            client("pip"),
            "install",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--target",
            target,
            "--index-url",
            token_url,
            "team-demo",
        ],
        env=env,
    )
    assert (target / "team_demo" / "__init__.py").is_file()
    # uv: the token through UV_INDEX_<NAME>_USERNAME/PASSWORD
    uv_env = env | {"UV_INDEX_TEAM_USERNAME": "__token__", "UV_INDEX_TEAM_PASSWORD": secret}
    run(
        [
            uv(),
            "pip",
            "install",
            "--python",
            venv_python,
            "--index",
            f"team={index.simple_url}",
            "team-demo",
        ],
        env=uv_env,
    )
    run([venv_python, "-c", "import team_demo"], env=env)
    # poetry: the token as http-basic password of the source
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        "dependencies = []\n[tool.poetry]\npackage-mode = false\n"
    )
    poetry_env = env | {
        "POETRY_HTTP_BASIC_TEAM_USERNAME": "__token__",
        "POETRY_HTTP_BASIC_TEAM_PASSWORD": secret,
    }
    run(
        [client("poetry"), "source", "add", "team", index.simple_url, "--priority", "explicit"],
        env=poetry_env,
        cwd=consumer,
    )
    result = run(
        [client("poetry"), "add", "--source", "team", "team-demo"],
        env=poetry_env,
        cwd=consumer,
        timeout=300,
    )
    assert "Installing team-demo (0.1.0)" in output(result)
    # every authenticated request of the three installers succeeded
    assert not index.log.find(status=401, contains="/files/")
