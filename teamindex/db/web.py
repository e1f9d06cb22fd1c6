"""Queries of the web UI and hosted docs."""

from __future__ import annotations

import json

from ..models import (
    DocsBuild,
    ReleaseInfo,
)
from .core import Connections
from .rows import (
    DOCS_SELECT,
)

# By release; p.id and o.role too, which PostgreSQL needs for the project and role columns
# (it derives nothing from r.id alone across the join) and change no group.
GROUP_RELEASES = " GROUP BY r.id, p.id, o.role"


class WebQueries(Connections):
    def release_infos(
        self, viewer_id: int | None, project_id: int | None = None
    ) -> list[ReleaseInfo]:
        """Releases that have files, with the viewer's role in their project; of one project
        or of all (the caller filters by permissions.can_see)."""
        # Two statements rather than "? IS NULL OR ...": one project's releases are then
        # found by index instead of a scan of every (wide: metadata) release row.
        query = (
            "SELECT r.id, p.name, p.display_name, p.visibility, o.role, r.version,"
            " r.canonical_version, r.summary, r.yanked, r.yanked_reason, r.created,"
            " max(f.upload_time) FROM releases r JOIN projects p ON p.id = r.project_id"
            " JOIN files f ON f.release_id = r.id"
            " LEFT JOIN roles o ON o.project_id = p.id AND o.user_id = ?"
        )
        if project_id is None:
            rows = self.conn.execute(query + GROUP_RELEASES, (viewer_id,)).fetchall()
        else:
            rows = self.conn.execute(
                query + " WHERE r.project_id = ?" + GROUP_RELEASES, (viewer_id, project_id)
            ).fetchall()
        return [ReleaseInfo(*row[:8], bool(row[8]), *row[9:]) for row in rows]

    def release_metadata(self, release_id: int) -> dict[str, str | list[str]]:
        """The parsed core metadata fields stored with a release (README in "description")."""
        row = self.conn.execute(
            "SELECT metadata_json FROM releases WHERE id = ?", (release_id,)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def file_uploaders(self, project_id: int) -> dict[int, str]:
        """File id -> uploader's user name ("" when unknown or deleted)."""
        rows = self.conn.execute(
            "SELECT f.id, coalesce(u.name, '') FROM files f JOIN releases r ON r.id = f.release_id"
            " LEFT JOIN users u ON u.id = f.uploader_id WHERE r.project_id = ?",
            (project_id,),
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def set_admin(self, name: str, is_admin: bool) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE users SET is_admin = ? WHERE name = ?", (int(is_admin), name)
            )
        return cursor.rowcount == 1

    def all_roles(self) -> list[tuple[str, str, str]]:
        """(project, user, role) for every grant."""
        rows = self.conn.execute(
            "SELECT p.name, u.name, r.role FROM roles r JOIN users u ON u.id = r.user_id"
            " JOIN projects p ON p.id = r.project_id ORDER BY p.name, u.name"
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def docs_builds(self, project_id: int) -> list[DocsBuild]:
        """The current docs build of each release of a project that has one."""
        rows = self.conn.execute(DOCS_SELECT + " WHERE r.project_id = ?", (project_id,)).fetchall()
        return [DocsBuild(*row) for row in rows]

    def all_docs_builds(self) -> list[DocsBuild]:
        """Every current docs build, for backups and integrity checks."""
        rows = self.conn.execute(DOCS_SELECT + " ORDER BY p.name, r.canonical_version").fetchall()
        return [DocsBuild(*row) for row in rows]

    def set_docs(
        self,
        release_id: int,
        build: str,
        *,
        files: int,
        size: int,
        uploader_id: int | None,
        now: str,
    ) -> str | None:
        """Make `build` the release's current docs (the atomic step of an upload); return
        the build it replaced, whose directory the caller removes."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT build FROM docs WHERE release_id = ?", (release_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO docs (release_id, build, files, size, uploaded, uploader_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (release_id) DO UPDATE SET"
                " build = excluded.build, files = excluded.files, size = excluded.size,"
                " uploaded = excluded.uploaded, uploader_id = excluded.uploader_id",
                (release_id, build, files, size, now, uploader_id),
            )
        return row[0] if row else None
