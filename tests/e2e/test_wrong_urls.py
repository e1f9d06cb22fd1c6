"""Real twine pointed at the install URL shows where uploads go (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import client, output, run

from .conftest import Index

pytestmark = pytest.mark.e2e


def test_twine_to_the_install_url_is_told_the_upload_url(
    index: Index, env: dict[str, str], demo_dists: list[Path]
) -> None:
    result = run(
        [
            client("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            index.simple_url,
            "-u",
            index.user,
            "-p",
            index.password,
            demo_dists[0],
        ],
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert f"This is the install URL; upload to {index.url}/legacy/" in output(result)
    assert not index.log.find("POST", 200)
