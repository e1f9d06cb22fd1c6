"""`teamindex upload-docs`: publish a documentation zip for a release from the server's host.

CI without shell access to the server uses `POST /docs/<project>/<version>/` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from ..config import Settings
from ..index.docs import DocsError
from ..index.docsbackends import open_docs
from ..index.storage import open_storage
from .base import CommandError, command, open_database, record_cli_event


def _upload_docs_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", help="project name")
    parser.add_argument("version", help="a release of the project that is in the index")
    parser.add_argument("zip", type=Path, help="the built site as a zip, index.html at its root")


@command(_upload_docs_args)
def cmd_upload_docs(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a built documentation site (a zip with index.html at its root, or in one
    top folder) for a release; it replaces that release's previous docs atomically and is
    served at /docs/PROJECT/VERSION/ and, for the highest version, /docs/PROJECT/latest/."""
    db = open_database(settings)
    project = canonicalize_name(args.project)
    found = db.get_project(project)
    if found is None:
        raise CommandError(f"no project {project!r}")
    try:
        wanted = canonicalize_version(Version(args.version))
    except InvalidVersion:
        raise CommandError(f"invalid version {args.version!r}") from None
    release = next(
        (r for r in db.release_infos(None, found.id) if r.canonical_version == wanted), None
    )
    if release is None:
        raise CommandError(f"no release {args.version} of project {project!r}")
    if not args.zip.is_file():
        raise CommandError(f"{args.zip} is not a file")
    try:
        docs = open_docs(settings.data_dir, open_storage(settings))
        published = docs.publish(db, release, args.zip, uploader_id=None)
    except DocsError as exc:
        raise CommandError(f"invalid documentation zip: {exc}") from None
    record_cli_event(
        db,
        "docs_upload",
        project=project,
        detail=f"{release.version}: {published.files} files, {published.size} bytes",
    )
    print(f"published docs for {project} {release.version}: {published.files} files")
    return 0
