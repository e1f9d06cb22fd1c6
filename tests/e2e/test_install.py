"""Installing with pip and uv: credentials, hashes, PEP 658 metadata, and clean failures
(PROTOCOL.md sections 2, 3.8 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from flask import Flask
from tools import client, output, run, uv

from .conftest import Index, seed, sha256_of

pytestmark = pytest.mark.e2e

IMPORT_BOTH = "import team_app, team_core; print(team_app.__version__, team_core.__version__)"


@pytest.fixture(scope="module")
def team_dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """team-core 1.0 (wheel + sdist) and team-app 1.0, whose wheel requires team-core."""
    directory = tmp_path_factory.mktemp("team-dists")
    return {
        "core-wheel": make_wheel(directory, "team-core", "1.0", requires_python=">=3.8"),
        "core-sdist": make_sdist(directory, "team-core", "1.0", requires_python=">=3.8"),
        "app-wheel": make_wheel(directory, "team-app", "1.0", requires_dist=["team-core>=1.0"]),
    }


@pytest.fixture
def populated(app: Flask, index: Index, team_dists: dict[str, Path]) -> Index:
    seed(app, *team_dists.values())
    return index


def pip(python: Path, *args: str | Path) -> list[str | Path]:
    """The current pip from .tools/pip, installing into another interpreter's environment."""
    return [client("pip"), "--python", python, *args]


def uv_install(python: Path) -> list[str | Path]:
    return [uv(), "pip", "install", "--python", python]


def metadata_fetches(index: Index) -> list[str]:
    return [path for path in index.log.paths("GET", 200) if path.endswith(".whl.metadata")]


def test_pip_install_with_credentials_in_the_url(
    populated: Index, env: dict[str, str], venv_python: Path
) -> None:
    run(pip(venv_python, "install", "--index-url", populated.auth_url(), "team-app"), env=env)
    result = run([venv_python, "-c", IMPORT_BOTH], env=env)
    assert result.stdout.split() == ["1.0", "1.0"]
    # pip read the dependencies from the PEP 658 .metadata files, not from the wheels.
    assert sorted(metadata_fetches(populated)) == [
        "/files/team-app/team_app-1.0-py3-none-any.whl.metadata",
        "/files/team-core/team_core-1.0-py3-none-any.whl.metadata",
    ]
    assert all(seen.authorized for seen in populated.log.find(contains="/files/"))


def test_pip_install_require_hashes(
    populated: Index,
    env: dict[str, str],
    venv_python: Path,
    tmp_path: Path,
    team_dists: dict[str, Path],
) -> None:
    requirements = tmp_path / "requirements.txt"
    wheel, sdist = team_dists["core-wheel"], team_dists["core-sdist"]
    requirements.write_text(
        f"team-core==1.0 --hash=sha256:{sha256_of(wheel)} --hash=sha256:{sha256_of(sdist)}\n"
    )
    install = pip(venv_python, "install", "--index-url", populated.auth_url())
    run([*install, "--require-hashes", "-r", requirements], env=env)
    run([venv_python, "-c", "import team_core"], env=env)

    # A hash that matches nothing on the index is refused before anything is installed.
    requirements.write_text(f"team-app==1.0 --hash=sha256:{'0' * 64}\n")
    result = run(
        [*install, "--require-hashes", "--no-deps", "-r", requirements], env=env, check=False
    )
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in output(result)


def test_uv_pip_install_with_credentials_from_the_environment(
    populated: Index, env: dict[str, str], venv_python: Path
) -> None:
    uv_env = env | {
        "UV_INDEX_TEAM_USERNAME": populated.user,
        "UV_INDEX_TEAM_PASSWORD": populated.password,
    }
    install = [*uv_install(venv_python), "--index", f"team={populated.simple_url}"]
    run([*install, "team-app"], env=uv_env)
    result = run([venv_python, "-c", IMPORT_BOTH], env=env)
    assert result.stdout.split() == ["1.0", "1.0"]
    assert sorted(metadata_fetches(populated)) == [
        "/files/team-app/team_app-1.0-py3-none-any.whl.metadata",
        "/files/team-core/team_core-1.0-py3-none-any.whl.metadata",
    ]
    # uv sent the credentials up front: no request was answered 401.
    assert not populated.log.find(status=401)


# -- failures -----------------------------------------------------------------------------------


def test_no_credentials_is_a_401_and_pip_finds_no_versions(
    populated: Index, env: dict[str, str], venv_python: Path
) -> None:
    status, headers, _body = populated.get("/simple/team-core/", auth=("", ""))
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="teamindex"'

    result = run(
        pip(venv_python, "install", "--index-url", populated.simple_url, "team-core"),
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "(from versions: none)" in output(result)
    assert "No matching distribution found for team-core" in output(result)
    assert populated.log.find("GET", 401, contains="/simple/team-core/")


def test_uv_without_credentials_names_the_auth_problem(
    populated: Index, env: dict[str, str], venv_python: Path
) -> None:
    result = run(
        [*uv_install(venv_python), "--default-index", populated.simple_url, "team-core"],
        env=env,
        check=False,
    )
    assert result.returncode == 1, output(result)
    assert "lack of valid authentication credentials (401 Unauthorized)" in output(result)
    assert "panicked" not in output(result)


def test_wrong_password_is_a_401(populated: Index, env: dict[str, str], venv_python: Path) -> None:
    status, headers, _body = populated.get("/simple/team-core/", auth=("alice", "wrong-password"))
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="teamindex"'
    bad_url = populated.auth_url(password="wrong-password")
    result = run(
        pip(venv_python, "install", "--index-url", bad_url, "team-core"), env=env, check=False
    )
    assert result.returncode != 0
    assert "(from versions: none)" in output(result)
    assert populated.log.find("GET", 401, contains="/simple/team-core/")
    assert not populated.log.find("GET", 200, contains="/simple/team-core/")


def test_unknown_project_is_a_404_for_pip_and_uv(
    populated: Index, env: dict[str, str], venv_python: Path
) -> None:
    result = run(
        pip(venv_python, "install", "--index-url", populated.auth_url(), "no-such-project"),
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "No matching distribution found for no-such-project" in output(result)
    assert "Traceback" not in output(result)

    uv_env = env | {
        "UV_INDEX_TEAM_USERNAME": populated.user,
        "UV_INDEX_TEAM_PASSWORD": populated.password,
    }
    team = f"team={populated.simple_url}"
    result = run(
        [*uv_install(venv_python), "--default-index", team, "no-such-project"],
        env=uv_env,
        check=False,
    )
    assert result.returncode == 1, output(result)
    assert "not found in the package registry" in output(result)
    assert "panicked" not in output(result)
    assert populated.log.paths("GET", 404) == ["/simple/no-such-project/"] * 2
