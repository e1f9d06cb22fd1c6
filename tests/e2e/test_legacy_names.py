"""Legacy filename spellings end to end (issue 12, failure 1): a wheel named as older
producers named them (`Team.Legacy-1.0-py3-none-any.whl`, dist-info spelled alike), as every
real pypiserver directory holds, published by twine and installed by pip and uv; a project
whose name has upper case and dots published by poetry."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import make_sdist, make_wheel
from tools import client, output, run, uv

from .conftest import Index, hashes_of, twine_upload
from .test_poetry import make_poetry_project

pytestmark = pytest.mark.e2e

WHEEL = "Team.Legacy-1.0-py3-none-any.whl"
SDIST = "Team.Legacy-1.0.tar.gz"


@pytest.fixture
def legacy_dists(tmp_path: Path) -> list[Path]:
    directory = tmp_path / "legacy"
    directory.mkdir()
    wheel = make_wheel(directory, "Team.Legacy", "1.0", legacy=True)
    sdist = make_sdist(directory, "Team.Legacy", "1.0", filename=SDIST)
    assert [wheel.name, sdist.name] == [WHEEL, SDIST]
    return [wheel, sdist]


def test_twine_publishes_a_legacy_wheel_that_pip_and_uv_install(
    index: Index,
    env: dict[str, str],
    legacy_dists: list[Path],
    venv_python: Path,
    tmp_path: Path,
) -> None:
    run(twine_upload(index, *legacy_dists), env=env)
    assert index.files("team-legacy") == hashes_of(legacy_dists)

    pip = [client("pip"), "--python", venv_python, "install", "--index-url", index.auth_url()]
    run([*pip, "--only-binary", ":all:", "team.legacy==1.0"], env=env)
    result = run([venv_python, "-c", "import team_legacy; print(team_legacy.__version__)"], env=env)
    assert result.stdout.strip() == "1.0"
    # pip read the metadata from the .metadata file under the exact name uploaded.
    assert index.log.find("GET", 200, contains=f"/files/team-legacy/{WHEEL}.metadata")
    assert index.log.find("GET", 200, contains=f"/files/team-legacy/{WHEEL}")

    other = tmp_path / "uv-venv"
    run([uv(), "venv", "--quiet", other], env=env)
    uv_env = env | {"UV_INDEX_TEAM_USERNAME": index.user, "UV_INDEX_TEAM_PASSWORD": index.password}
    uv_pip = [uv(), "pip", "install", "--python", other / "bin" / "python", "--no-build"]
    run([*uv_pip, "--index", f"team={index.simple_url}", "Team.Legacy==1.0"], env=uv_env)
    run([other / "bin" / "python", "-c", "import team_legacy"], env=env)


def test_twine_other_spelling_is_the_same_file(
    index: Index, env: dict[str, str], legacy_dists: list[Path], tmp_path: Path
) -> None:
    wheel = legacy_dists[0]
    run(twine_upload(index, wheel), env=env)
    # The same bytes under today's spelling: a success that stores nothing new.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    same = renamed / "team_legacy-1.0-py3-none-any.whl"
    same.write_bytes(wheel.read_bytes())
    run(twine_upload(index, same), env=env)
    assert index.files("team-legacy") == hashes_of([wheel])
    # Other bytes under today's spelling: the file already exists.
    changed = make_wheel(tmp_path, "team.legacy", "1.0", padding=7)
    assert changed.name == same.name
    result = run(twine_upload(index, changed), env=env, check=False)
    assert result.returncode != 0
    assert f"File already exists ('{WHEEL}'" in output(result)
    assert index.files("team-legacy") == hashes_of([wheel])


def test_poetry_publishes_a_project_named_with_capitals_and_dots(
    index: Index, env: dict[str, str], tmp_path: Path
) -> None:
    poetry = client("poetry")
    project = make_poetry_project(tmp_path, "Team.Dotted")
    run([poetry, "build"], env=env, cwd=project)
    built = sorted((project / "dist").iterdir())
    publish_env = env | {
        "POETRY_REPOSITORIES_TEAM_URL": index.upload_url,
        "POETRY_HTTP_BASIC_TEAM_USERNAME": index.user,
        "POETRY_HTTP_BASIC_TEAM_PASSWORD": index.password,
    }
    run([poetry, "publish", "-r", "team"], env=publish_env, cwd=project)
    assert index.files("team-dotted") == hashes_of(built)
    page = index.project_json("team-dotted")
    assert page["name"] == "team-dotted"
