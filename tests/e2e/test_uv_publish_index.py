"""The README's uv publishing recipe: `[[tool.uv.index]] publish-url` plus
`uv publish --index team`, credentials from UV_INDEX_TEAM_* (none in a URL), re-runs skip
what is already there (the index's url is the check URL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import output, run, uv

from .conftest import Index, copy_to, hashes_of

pytestmark = pytest.mark.e2e

# UV_INDEX_TEAM_* are the index's credentials, not publish credentials: without the flag uv
# first tries trusted publishing (OIDC) against the host, retrying for over a minute.
PUBLISH = ["--index", "team", "--trusted-publishing", "never"]


def test_uv_publish_to_a_named_index(
    index: Index, env: dict[str, str], tmp_path: Path, demo_dists: list[Path]
) -> None:
    project = tmp_path / "project"
    copy_to(project / "dist", demo_dists)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "team-demo"\nversion = "0.1.0"\n\n'
        f'[[tool.uv.index]]\nname = "team"\nurl = "{index.simple_url}"\n'
        f'publish-url = "{index.upload_url}"\nexplicit = true\n'
    )
    publish_env = {k: v for k, v in env.items() if k != "UV_NO_CONFIG"} | {
        "UV_INDEX_TEAM_USERNAME": index.user,
        "UV_INDEX_TEAM_PASSWORD": index.password,
    }
    run([uv(), "publish", *PUBLISH], env=publish_env, cwd=project)
    assert index.files("team-demo") == hashes_of(demo_dists)
    again = run([uv(), "publish", *PUBLISH], env=publish_env, cwd=project)
    assert output(again).count("already exists, skipping") == len(demo_dists)
