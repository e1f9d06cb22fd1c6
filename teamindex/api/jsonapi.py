"""Warehouse's JSON API: /pypi/<project>/json and /pypi/<project>/<version>/json.

Renovate asks /pypi/<project>/json before the simple API (for release dates and source
URLs), and Dependabot-style bots and many scripts read the same shape. The fields follow
Warehouse's legacy JSON views (warehouse/legacy/api/json.py); where teamindex has no such
data (download counts, signatures, bug tracker, vulnerabilities) the answer carries
Warehouse's empty value, so strict clients parse it. The same read rule as the simple pages
applies (a hidden project is the missing project's 404, a token's project list counts), and
each answer is cached per project serial like the pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, request, url_for
from packaging.version import InvalidVersion, Version

from ..access.httpauth import authorize, login_required, project_in_url
from ..access.permissions import Action
from ..context import services
from ..errors import HTTPError
from ..models import FileRecord, Project, ReleaseInfo
from . import render
from .pagecache import page_reply

bp = Blueprint("jsonapi", __name__)

JSON_MIMETYPE = "application/json"
Metadata = dict[str, str | list[str]]


@bp.get("/pypi/<name>/json")
@login_required
def project_json(name: str) -> Response:
    return _answer(name, None)


@bp.get("/pypi/<name>/<version>/json")
@login_required
def release_json(name: str, version: str) -> Response:
    return _answer(name, version)


def _answer(name: str, version: str | None) -> Response:
    normalized = project_in_url(name)
    if normalized != name:
        return _moved(normalized, version)  # Warehouse redirects to the canonical name too
    found, _principal = authorize(Action.READ, normalized)
    assert found is not None
    svc = services()
    if version is not None:
        release = _find(svc.db.release_infos(None, found.id), version)
        if release is None:
            raise HTTPError(404, f"No release {version!r} of project {normalized!r} here.")
        if release.version != version:
            return _moved(normalized, release.version)
    base = request.url_root
    # Rendered only when the project's serial moved: a repeat costs no release query.
    page = svc.pages.get_or_build(
        ("pypi-json", found.name, version or "", base),
        found.serial,
        lambda: render.to_json(_build(found, version, base)),
    )
    reply = page_reply(
        page,
        JSON_MIMETYPE,
        request.headers.get("Accept-Encoding", ""),
        request.headers.get("If-None-Match"),
    )
    return Response(reply.body, status=reply.status, headers=reply.headers)


def _build(project: Project, version: str | None, base: str) -> dict[str, Any]:
    db = services().db
    releases = db.release_infos(None, project.id)
    release = _latest(releases) if version is None else _find(releases, version)
    if release is None:  # a reserved name without files yet, or a release just deleted
        raise HTTPError(404, f"No releases of project {project.name!r} in this index.")
    return project_document(
        project,
        release,
        db.release_metadata(release.id),
        db.project_files(project),
        base,
        with_releases=version is None,
    )


def _moved(name: str, version: str | None) -> Response:
    if version is None:
        location = url_for("jsonapi.project_json", name=name)
    else:
        location = url_for("jsonapi.release_json", name=name, version=version)
    query = request.query_string.decode("latin-1")
    return redirect(location + (f"?{query}" if query else ""), code=301)


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _latest(releases: list[ReleaseInfo]) -> ReleaseInfo | None:
    """The release `info` describes, as Warehouse picks it: the newest that is neither
    yanked nor a pre-release, else the newest not yanked, else the newest."""
    ordered = sorted(releases, key=lambda r: _version(r.version) or Version("0"), reverse=True)
    for wanted in (
        lambda r: not r.yanked and not (_version(r.version) or Version("0")).is_prerelease,
        lambda r: not r.yanked,
        lambda _r: True,
    ):
        for release in ordered:
            if wanted(release):
                return release
    return None


def _find(releases: list[ReleaseInfo], version: str) -> ReleaseInfo | None:
    wanted = _version(version)
    for release in releases:
        if release.version == version or (
            wanted is not None and _version(release.version) == wanted
        ):
            return release
    return None


def project_document(
    project: Project,
    release: ReleaseInfo,
    metadata: Metadata,
    files: list[FileRecord],
    base: str,
    *,
    with_releases: bool,
) -> dict[str, Any]:
    """The JSON document of one project at `release`. The per-version endpoint has no
    `releases` key, as on Warehouse since it dropped it there."""
    package_url = f"{base}project/{project.name}/"
    document: dict[str, Any] = {
        "info": _info(project, release, metadata, package_url),
        "last_serial": project.serial,
    }
    if with_releases:
        by_version: dict[str, list[dict[str, Any]]] = {}
        for record in sorted(files, key=lambda r: _version(r.version) or Version("0")):
            by_version.setdefault(record.version, []).append(_file(record, base))
        document["releases"] = by_version
    document["urls"] = [_file(r, base) for r in files if r.version == release.version]
    document["vulnerabilities"] = []
    return document


def _text(metadata: Metadata, key: str) -> str | None:
    value = metadata.get(key)
    if isinstance(value, list):
        return ", ".join(value) or None
    return value or None


def _list(metadata: Metadata, key: str) -> list[str] | None:
    value = metadata.get(key)
    if isinstance(value, str):
        return [value]
    return list(value) if value else None


def _project_urls(metadata: Metadata) -> dict[str, str] | None:
    """Project-URL entries ("Label, url"; stored as such) as Warehouse's label -> URL map."""
    urls = {}
    for entry in _list(metadata, "project_urls") or []:
        label, _, url = entry.partition(",")
        urls[label.strip()] = url.strip()
    return urls or None


def _info(
    project: Project, release: ReleaseInfo, metadata: Metadata, package_url: str
) -> dict[str, Any]:
    return {
        "author": _text(metadata, "author"),
        "author_email": _text(metadata, "author_email"),
        "bugtrack_url": None,
        "classifiers": _list(metadata, "classifiers") or [],
        "description": _text(metadata, "description") or "",
        "description_content_type": _text(metadata, "description_content_type"),
        "docs_url": None,
        "download_url": _text(metadata, "download_url"),
        "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
        "dynamic": _list(metadata, "dynamic"),
        "home_page": _text(metadata, "home_page"),
        "keywords": _text(metadata, "keywords"),
        "license": _text(metadata, "license"),
        "license_expression": _text(metadata, "license_expression"),
        "license_files": _list(metadata, "license_files"),
        "maintainer": _text(metadata, "maintainer"),
        "maintainer_email": _text(metadata, "maintainer_email"),
        "name": project.display_name,
        "package_url": package_url,
        "platform": _text(metadata, "platforms"),
        "project_url": package_url,
        "project_urls": _project_urls(metadata),
        "provides_extra": _list(metadata, "provides_extra"),
        "release_url": f"{package_url}#v-{quote(release.version)}",
        "requires_dist": _list(metadata, "requires_dist"),
        "requires_python": _text(metadata, "requires_python"),
        "summary": release.summary or _text(metadata, "summary"),
        "version": release.version,
        "yanked": release.yanked,
        "yanked_reason": (release.yanked_reason or None) if release.yanked else None,
    }


def _file(record: FileRecord, base: str) -> dict[str, Any]:
    uploaded = datetime.fromisoformat(record.upload_time.replace("Z", "+00:00"))
    return {
        "comment_text": "",
        "digests": {
            "blake2b_256": record.blake2_256,
            "md5": record.md5,
            "sha256": record.sha256,
        },
        "downloads": -1,
        "filename": record.filename,
        "has_sig": False,
        "md5_digest": record.md5,
        "packagetype": record.packagetype,
        "python_version": record.python_version,
        "requires_python": record.requires_python or None,
        "size": record.size,
        "upload_time": uploaded.strftime("%Y-%m-%dT%H:%M:%S"),
        "upload_time_iso_8601": uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "url": f"{base}files/{record.project}/{quote(record.filename)}",
        "yanked": record.yanked,
        "yanked_reason": (record.yanked_reason or None) if record.yanked else None,
    }
