"""Publishing with twine, uv, pdm and hatch to /legacy/ (PROTOCOL.md sections 6 and 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops_support import run_cli
from s3_support import local_disk_only
from tools import client, output, run, uv

from teamindex.config import Settings

from .conftest import Index, copy_to, hashes_of, twine_upload

pytestmark = pytest.mark.e2e


def test_twine_upload_reupload_and_conflict(
    index: Index, env: dict[str, str], demo_dists: list[Path], conflicting_wheel: Path
) -> None:
    run(twine_upload(index, *demo_dists), env=env)
    assert index.files("team-demo") == hashes_of(demo_dists)

    # An identical re-upload (a CI re-run, a twine retry) is a success.
    run(twine_upload(index, *demo_dists), env=env)
    assert len(index.log.find("POST", 200, contains="/legacy")) == 4

    # Same filename, other bytes: refused, and twine shows the server's reason phrase.
    result = run(twine_upload(index, conflicting_wheel), env=env, check=False)
    assert result.returncode != 0
    assert "File already exists" in output(result)
    assert index.files("team-demo") == hashes_of(demo_dists)


def test_twine_uploads_a_real_build_that_installs(
    index: Index, env: dict[str, str], built_dists: list[Path], venv_python: Path
) -> None:
    run(twine_upload(index, *built_dists), env=env)
    page = index.project_json("team-built")
    assert {f["filename"]: f["hashes"]["sha256"] for f in page["files"]} == hashes_of(built_dists)
    assert {f.get("requires-python") for f in page["files"]} == {">=3.9"}
    assert page["versions"] == ["1.2.0"]

    install = [client("pip"), "--python", venv_python, "install", "--index-url", index.auth_url()]
    run([*install, "Team.Built==1.2.0"], env=env)
    result = run([venv_python, "-c", "import team_built; print(team_built.GREETING)"], env=env)
    assert result.stdout.strip() == "built"
    assert index.log.find("GET", 200, contains="team_built-1.2.0-py3-none-any.whl.metadata")


def test_uv_publish_then_check_url_skips_existing(
    index: Index, env: dict[str, str], demo_dists: list[Path], conflicting_wheel: Path
) -> None:
    publish = [uv(), "publish", "--publish-url", index.upload_url]
    publish += ["-u", index.user, "-p", index.password]
    # uv sends the file part without a Content-Type (PROTOCOL.md 6.1).
    run([*publish, *demo_dists], env=env)
    assert index.files("team-demo") == hashes_of(demo_dists)
    posts = len(index.log.find("POST"))

    result = run([*publish, "--check-url", index.auth_url(), *demo_dists], env=env)
    assert output(result).count("already exists, skipping") == 2, output(result)
    assert len(index.log.find("POST")) == posts  # nothing was sent again

    # The check URL also catches a local file that differs from the index's.
    result = run(
        [*publish, "--check-url", index.auth_url(), conflicting_wheel], env=env, check=False
    )
    assert result.returncode != 0
    assert "do not match" in output(result)

    # Without --check-url the conflict reaches the server, and uv shows its message.
    result = run([*publish, conflicting_wheel], env=env, check=False)
    assert result.returncode != 0
    assert "File already exists" in output(result)


def test_pdm_publish_no_build_and_skip_existing(
    index: Index,
    env: dict[str, str],
    tmp_path: Path,
    demo_dists: list[Path],
    conflicting_wheel: Path,
) -> None:
    project = tmp_path / "project"
    copy_to(project / "dist", demo_dists)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "Team_Demo"\nversion = "0.1.0"\nrequires-python = ">=3.8"\n'
    )
    publish = [client("pdm"), "publish", "--no-build", "-r", index.upload_url]
    publish += ["-u", index.user, "-P", index.password]
    run(publish, env=env, cwd=project)
    assert index.files("team-demo") == hashes_of(demo_dists)
    run(publish, env=env, cwd=project)  # identical re-upload: 200 again

    # Other bytes under the same name: an error, which --skip-existing turns into a skip
    # (pdm matches 409, or 400 with "already exist" in the message; PROTOCOL.md 7.4).
    copy_to(project / "dist", [conflicting_wheel])
    result = run(publish, env=env, cwd=project, check=False)
    assert result.returncode != 0
    assert "File already exists" in output(result)
    result = run([*publish, "--skip-existing"], env=env, cwd=project)
    assert f"Skipping {conflicting_wheel.name} because it appears to already exist" in output(
        result
    )
    assert index.files("team-demo") == hashes_of(demo_dists)


def test_hatch_publish_probes_and_skips_existing(
    index: Index, env: dict[str, str], tmp_path: Path, demo_dists: list[Path]
) -> None:
    publish = [client("hatch"), "publish", "-n", "-r", index.upload_url]
    publish += ["-u", index.user, "-a", index.password, *map(str, demo_dists)]
    run(publish, env=env, cwd=tmp_path)
    assert index.files("team-demo") == hashes_of(demo_dists)
    posts = len(index.log.find("POST"))

    # hatch treats every non-PyPI index as devpi and asks <upload-url>+simple/<name>/ which
    # files exist (PROTOCOL.md 7.5); the second run finds both there and uploads nothing.
    result = run(publish, env=env, cwd=tmp_path)
    assert output(result).count("already exists") == 2, output(result)
    assert len(index.log.find("POST")) == posts
    assert index.log.find("GET", 200, contains="/legacy/+simple/team-demo/")


@local_disk_only("damages a file in packages/ and finds it quarantined in the data dir")
def test_corrupted_file_is_quarantined_and_healed_by_twine(
    index: Index,
    env: dict[str, str],
    settings: Settings,
    demo_dists: list[Path],
    conflicting_wheel: Path,
) -> None:
    """A file damaged on disk: `check` finds it, `check --repair` quarantines it (the row
    stays), downloads say it is missing, other bytes are still refused, and a twine upload
    of the same file restores it (issue 12)."""
    run(twine_upload(index, *demo_dists), env=env)
    wheel = demo_dists[0]
    stored = settings.packages_dir / "team-demo" / wheel.name
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))

    found = run_cli(settings.data_dir, "check")
    assert found.returncode == 1
    assert f"sha256: {stored}: content differs" in found.stdout
    repaired = run_cli(settings.data_dir, "check", "--repair")
    assert repaired.returncode == 1, repaired.stdout
    assert f"missing: {stored}: quarantined as damaged; upload {wheel.name} again" in (
        repaired.stdout
    )
    assert not stored.exists()
    assert index.files("team-demo") == hashes_of(demo_dists)  # the row stays listed
    status, _headers, body = index.get(f"/files/team-demo/{wheel.name}", accept="*/*")
    assert status == 404
    assert b"missing from storage" in body

    refused = run(twine_upload(index, conflicting_wheel), env=env, check=False)
    assert refused.returncode != 0
    assert "File already exists" in output(refused)
    assert not stored.exists()
    assert run_cli(settings.data_dir, "check").returncode == 1

    run(twine_upload(index, wheel), env=env)
    status, _headers, body = index.get(f"/files/team-demo/{wheel.name}", accept="*/*")
    assert status == 200
    assert body == wheel.read_bytes()
    healed = run_cli(settings.data_dir, "check")
    assert healed.returncode == 0, healed.stdout
    assert healed.stdout.endswith(": ok\n")
