"""The HTML and JSON project pages, read by the pypi-simple library, say the same things
(PEP 503, 691, 700, 592, 658/714; PROTOCOL.md 3.4 and 3.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builders import make_sdist, make_wheel
from flask import Flask
from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, DistributionPackage, PyPISimple

from .conftest import Index, seed, sha256_of

pytestmark = pytest.mark.e2e

# "<" and ">" must survive HTML escaping in data-requires-python.
REQUIRES_PYTHON = ">=3.8,<4"


@pytest.fixture(scope="module")
def page_dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("page-dists")
    return [
        make_wheel(directory, "Team.Pages", "1.0", requires_python=REQUIRES_PYTHON),
        make_sdist(directory, "Team.Pages", "1.0", requires_python=REQUIRES_PYTHON),
        make_wheel(directory, "Team.Pages", "1.1"),  # yanked with a reason below
        make_sdist(directory, "Team.Pages", "1.2"),  # yanked without a reason below
    ]


def view(package: DistributionPackage) -> dict[str, Any]:
    """What both serializations must agree on (the JSON-only fields size and upload-time
    are compared separately: HTML carries them as non-standard data- attributes)."""
    return {
        "filename": package.filename,
        "version": package.version,
        "package_type": package.package_type,
        "digests": package.digests,
        "requires_python": package.requires_python,
        "is_yanked": package.is_yanked,
        # No reason is data-yanked="" in HTML and `true` in JSON; pypi-simple gives "" / None.
        "yanked_reason": package.yanked_reason or None,
        "has_metadata": package.has_metadata,
        "metadata_digests": package.metadata_digests,
    }


def test_html_and_json_pages_agree(app: Flask, index: Index, page_dists: list[Path]) -> None:
    seed(app, *page_dists)
    db = app.extensions["teamindex"].db
    assert db.set_yanked("team-pages", "1.1", yanked=True, reason="broken <build>")
    assert db.set_yanked("team-pages", "1.2", yanked=True)

    auth = (index.user, index.password)
    with (
        PyPISimple(index.simple_url, auth=auth, accept=ACCEPT_HTML_ONLY) as html_client,
        PyPISimple(index.simple_url, auth=auth, accept=ACCEPT_JSON_ONLY) as json_client,
    ):
        html = html_client.get_project_page("Team.Pages")
        data = json_client.get_project_page("team-pages")
        # Metadata for a wheel, through the advertised URL, checked against its digest.
        wheel = next(p for p in data.packages if p.filename.endswith("1.0-py3-none-any.whl"))
        metadata = json_client.get_package_metadata(wheel, verify=True)

    assert html.repository_version == data.repository_version == "1.1"
    assert [view(p) for p in html.packages] == [view(p) for p in data.packages]
    assert {p.url for p in html.packages} == {p.url for p in data.packages}

    by_name = {p.filename: p for p in data.packages}
    expected = {path.name: sha256_of(path) for path in page_dists}
    assert {name: p.digests for name, p in by_name.items()} == {
        name: {"sha256": digest} for name, digest in expected.items()
    }
    assert by_name["team_pages-1.0-py3-none-any.whl"].requires_python == REQUIRES_PYTHON
    assert by_name["team_pages-1.0.tar.gz"].requires_python == REQUIRES_PYTHON
    assert by_name["team_pages-1.1-py3-none-any.whl"].yanked_reason == "broken <build>"
    assert by_name["team_pages-1.2.tar.gz"].is_yanked
    assert not by_name["team_pages-1.0.tar.gz"].is_yanked
    # PEP 658 metadata only for wheels.
    assert {name for name, p in by_name.items() if p.has_metadata} == {
        "team_pages-1.0-py3-none-any.whl",
        "team_pages-1.1-py3-none-any.whl",
    }
    assert "Name: Team.Pages" in metadata
    assert f"Requires-Python: {REQUIRES_PYTHON}" in metadata
    for path in page_dists:
        package = by_name[path.name]
        assert package.size == path.stat().st_size
        assert package.upload_time is not None
        assert package.upload_time.tzinfo is not None

    # The project list agrees as well.
    with (
        PyPISimple(index.simple_url, auth=auth, accept=ACCEPT_HTML_ONLY) as html_client,
        PyPISimple(index.simple_url, auth=auth, accept=ACCEPT_JSON_ONLY) as json_client,
    ):
        assert html_client.get_index_page().projects == json_client.get_index_page().projects
        assert "Team.Pages" in json_client.get_index_page().projects
