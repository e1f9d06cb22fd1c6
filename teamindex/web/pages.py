"""The project list (`/`) and the project page (`/project/<name>/`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, request, url_for
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..access.httpauth import authorize, project_in_url
from ..access.permissions import Action, Principal, ProjectFacts, can_see, listing_view
from ..api import proxy
from ..context import services
from ..models import FileRecord, Project, ReleaseInfo
from ..upstream import Origin, UpstreamFile
from .base import page
from .hosting import latest_docs
from .session import viewer
from .state import web_state

bp = Blueprint("pages", __name__)

MAX_QUERY = 200


@dataclass(frozen=True)
class ProjectSummary:
    name: str
    display_name: str
    version: str
    summary: str
    updated: str
    restricted: bool


@dataclass(frozen=True)
class Dependency:
    text: str  # the requirement as written
    name: str  # normalized
    linked: bool  # a project of this index the viewer may open


def version_key(text: str) -> tuple[int, Version | str]:
    """Sort key for stored versions (all valid PEP 440; keep going if one is not)."""
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def pick_latest(releases: Iterable[ReleaseInfo]) -> ReleaseInfo | None:
    """The version a visitor means by "latest", as on PyPI: the highest final release that
    is not yanked; else the highest pre-release that is not yanked; else the highest."""
    keyed = sorted(
        ((version_key(r.version), r) for r in releases), key=lambda pair: pair[0], reverse=True
    )
    ordered = [release for _key, release in keyed]
    live = [release for key, release in keyed if not release.yanked]
    final = [
        release
        for key, release in keyed
        if not release.yanked and isinstance(key[1], Version) and not key[1].is_prerelease
    ]
    for candidates in (final, live, ordered):
        if candidates:
            return candidates[0]
    return None


def _facts(release: ReleaseInfo) -> ProjectFacts:
    return ProjectFacts(release.project, True, release.visibility, release.role)


def visible_projects(principal: Principal, query: str = "") -> list[ProjectSummary]:
    """Projects the viewer may see (permissions.can_see), optionally matching `query` in
    name or summary, most recently updated first. The full list is cached per viewer until
    the index's serial changes (every upload, yank, delete, grant and visibility change)."""
    db = services().db
    listing = web_state().listings.get_or_build(
        (listing_view(principal), db.serial()), lambda: _all_visible(principal)
    )
    needle = query.strip().lower()
    if not needle:
        return list(listing)
    return [
        project
        for project in listing
        if needle in f"{project.name} {project.display_name} {project.summary}".lower()
    ]


def _all_visible(principal: Principal) -> list[ProjectSummary]:
    user = principal.user
    by_project: dict[str, list[ReleaseInfo]] = defaultdict(list)
    for release in services().db.release_infos(user.id if user else None):
        by_project[release.project].append(release)
    found = []
    for releases in by_project.values():
        if not can_see(principal, _facts(releases[0])):
            continue
        latest = pick_latest(releases)
        assert latest is not None
        found.append(
            ProjectSummary(
                name=latest.project,
                display_name=latest.display_name,
                version=latest.version,
                summary=latest.summary,
                updated=max(r.updated for r in releases),
                restricted=latest.visibility == "restricted",
            )
        )
    found.sort(key=lambda p: (p.updated, p.name), reverse=True)
    return found


@bp.get("/")
def home() -> Response:
    query = request.args.get("q", "")[:MAX_QUERY]
    projects = visible_projects(viewer(), query)
    return page("home.html", projects=projects, query=query)


@bp.get("/project/<name>/")
def project(name: str) -> Response:
    normalized = project_in_url(name)
    if normalized != name:
        return redirect(url_for("web.pages.project", name=normalized), code=301)
    principal = viewer()
    svc = services()
    if svc.upstream is not None and svc.db.get_project(normalized) is None:
        listing = proxy.web_listing(normalized, principal, [])
        if listing is not None:
            return _upstream_page(normalized, listing)
    found, _principal = authorize(Action.READ, normalized, principal)
    assert found is not None
    user = principal.user
    releases = svc.db.release_infos(user.id if user else None, found.id)
    releases.sort(key=lambda r: version_key(r.version), reverse=True)
    latest = pick_latest(releases)
    metadata = svc.db.release_metadata(latest.id) if latest else {}
    files = sorted(svc.db.project_files(found), key=lambda f: (version_key(f.version), f.filename))
    files.reverse()
    readme_text = _text(metadata.get("description"))
    readme = (
        web_state().readmes.render(readme_text, _text(metadata.get("description_content_type")))
        if readme_text.strip()
        else None
    )
    index_url = url_for("simple.index", _external=True)
    return page(
        "project.html",
        project=found,
        origin=_origin(principal, found.name, files),
        latest=latest,
        releases=releases,
        files_by_version=_group_files(files),
        uploaders=svc.db.file_uploaders(found.id),
        readme=readme,
        metadata=metadata,
        requires_python=_text(metadata.get("requires_python")),
        dependencies=dependencies(principal, metadata.get("requires_dist")),
        project_urls=_project_urls(metadata.get("project_urls")),
        snippets=install_snippets(
            index_url, private_closure(principal, found.name, metadata.get("requires_dist"))
        ),
        docs=latest_docs(found),
    )


def _origin(principal: Principal, name: str, files: list[FileRecord]) -> proxy.WebListing | None:
    """The upstream part of a local project's page: None without an upstream; LOCAL (the
    name is never sent upstream) or MIXED with upstream's files beside the local ones."""
    upstream = services().upstream
    if upstream is None:
        return None
    if upstream.origin(name, True) is Origin.LOCAL:
        return proxy.WebListing(Origin.LOCAL, [], 0, None)
    return proxy.web_listing(name, principal, [f.filename for f in files])


def _upstream_page(name: str, listing: proxy.WebListing) -> Response:
    """The page of a project only upstream has: its versions and the files the viewer may
    download through this index now (the cooldown applied), newest first."""
    by_version: dict[str, list[UpstreamFile]] = {}
    ordered = sorted(listing.files, key=lambda f: (version_key(f.version), f.filename))
    for found in reversed(ordered):
        by_version.setdefault(found.version, []).append(found)
    return page("upstream_project.html", name=name, listing=listing, files_by_version=by_version)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _group_files(files: list[FileRecord]) -> dict[str, list[FileRecord]]:
    grouped: dict[str, list[FileRecord]] = {}
    for record in files:
        grouped.setdefault(record.version, []).append(record)
    return grouped


def _project_urls(value: object) -> list[tuple[str, str]]:
    """Project-URL entries ('Label, https://...'); only http(s) links are shown."""
    urls = []
    for entry in value if isinstance(value, list) else []:
        label, _, url = str(entry).partition(",")
        url = url.strip()
        if url.startswith(("https://", "http://")):
            urls.append((label.strip() or url, url))
    return urls


def dependencies(principal: Principal, value: object) -> list[Dependency]:
    """Requires-Dist entries; the ones naming a project of this index that the viewer may
    see are linked (a restricted one stays plain text, like a public dependency)."""
    from packaging.requirements import InvalidRequirement, Requirement  # cold start: lazily

    found = []
    for text in value if isinstance(value, list) else []:
        try:
            name = canonicalize_name(Requirement(str(text)).name)
        except InvalidRequirement:
            found.append(Dependency(str(text), "", linked=False))
            continue
        found.append(Dependency(str(text), name, _visible(principal, name) is not None))
    return found


def _visible(principal: Principal, name: str) -> Project | None:
    """The project called `name` if the viewer may see it; None alike for a missing one and
    for one hidden from the viewer, so nothing built from this reveals the difference."""
    user = principal.user
    project, role = services().db.project_with_role(name, user.id if user else None)
    if project is None or not can_see(
        principal, ProjectFacts(name, True, project.visibility, role)
    ):
        return None
    return project


# A bound on the walk through dependencies: a snippet naming more is unreadable anyway, and a
# page view must not turn into a walk through the whole index.
MAX_PRIVATE_DEPENDENCIES = 50


def requirement_names(value: object) -> list[str]:
    """Normalized names of Requires-Dist entries that are installed without extras (one
    needed only for an extra is not pulled in by a plain install; naming it would add it)."""
    from packaging.requirements import InvalidRequirement, Requirement  # cold start: lazily

    names = []
    for text in value if isinstance(value, list) else []:
        try:
            requirement = Requirement(str(text))
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        names.append(canonicalize_name(requirement.name))
    return names


def private_closure(principal: Principal, name: str, requires_dist: object) -> list[str]:
    """`name`, then every project of this index it needs (Requires-Dist of each latest
    release, followed through this index's projects), as far as the viewer may see them.

    poetry never passes a source on to transitive dependencies (poetry #2610) and uv only
    honours an index pin for a direct dependency, so the snippets must name these. A project
    the viewer may not see is treated exactly like a name that is not here (issue 10)."""
    names = [name]
    seen = {name}
    queue = requirement_names(requires_dist)
    while queue and len(names) < MAX_PRIVATE_DEPENDENCIES:
        dependency = queue.pop(0)
        if dependency in seen:
            continue
        seen.add(dependency)
        project = _visible(principal, dependency)
        if project is None:
            continue
        names.append(dependency)
        queue.extend(requirement_names(_latest_requires(principal, project)))
    return names


def _latest_requires(principal: Principal, project: Project) -> object:
    user = principal.user
    db = services().db
    latest = pick_latest(db.release_infos(user.id if user else None, project.id))
    return db.release_metadata(latest.id).get("requires_dist") if latest else None


SNIPPET_ENV_NAME = "TEAMINDEX_TOKEN"


def install_snippets(index_url: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """(tool, shell lines to copy) that install names[0]. `names` are the project and every
    project of this index it needs: each snippet names or pins them all. The index URL is
    this server's, as the request saw it (behind the trusted proxy: its scheme and host).

    Every snippet runs as printed with a token in $TEAMINDEX_TOKEN and says where each
    client takes credentials from, so no secret lands in a file, a URL in shell history or
    pyproject.toml."""
    host = urlsplit(index_url).hostname or "HOST"
    scheme, _, rest = index_url.partition("://")
    token = "${" + SNIPPET_ENV_NAME + "}"
    listed = " ".join(names)
    pip = (
        f"# credentials: ~/.netrc (machine {host} login __token__ password <token>),"
        " keyring, or as here\n"
        f'PIP_INDEX_URL="{scheme}://__token__:{token}@{rest}" pip install {names[0]}'
    )
    uv = (
        "# once: this index in pyproject.toml, used only for the packages pinned to it\n"
        "cat >> pyproject.toml <<'EOF'\n"
        "\n"
        "[[tool.uv.index]]\n"
        'name = "team"\n'
        f'url = "{index_url}"\n'
        "explicit = true\n"
        "EOF\n"
        "# credentials (or keyring / ~/.netrc)\n"
        f'export UV_INDEX_TEAM_USERNAME=__token__ UV_INDEX_TEAM_PASSWORD="{token}"\n'
        "# pins each package of this index to it ([tool.uv.sources]), dependencies included\n"
        f"uv add --index team={index_url} {listed}"
    )
    poetry = (
        f"poetry source add team {index_url} --priority explicit\n"
        "# credentials: poetry config http-basic.team __token__ (asks; keyring), or\n"
        "export POETRY_HTTP_BASIC_TEAM_USERNAME=__token__"
        f' POETRY_HTTP_BASIC_TEAM_PASSWORD="{token}"\n'
        "# with the packages of this index it needs: poetry passes no source on (#2610)\n"
        f"poetry add --source team {listed}"
    )
    return [("pip", pip), ("uv", uv), ("poetry", poetry)]
