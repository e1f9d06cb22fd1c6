"""Trusted publishing (migration 0008): publishers, spent OIDC token ids, minted tokens."""

from __future__ import annotations

import json
from typing import Any

from ..models import Publisher
from .core import Conflict, Connections, integrity_errors

_SELECT_PUBLISHERS = (
    "SELECT p.id, p.project_name, p.pending, p.kind, p.issuer, p.claims, p.user_id, u.name,"
    " p.created, p.project_id FROM publishers p JOIN users u ON u.id = p.user_id"
)


def _publisher_from(row: Any) -> Publisher:
    return Publisher(
        id=row[0],
        project=row[1],
        pending=bool(row[2]),
        kind=row[3],
        issuer=row[4],
        claims=json.loads(row[5]),
        user_id=row[6],
        user_name=row[7],
        created=row[8],
        project_id=row[9],
    )


class OidcQueries(Connections):
    def add_publisher(
        self,
        *,
        project: str,
        project_id: int | None,
        kind: str,
        issuer: str,
        claims: dict[str, str],
        user_id: int,
        now: str,
    ) -> int:
        """Register a publisher; project_id None makes it pending (the project is created by
        its first upload). The same identity twice for one project is a Conflict."""
        try:
            with self.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO publishers (project_id, project_name, pending, kind, issuer,"
                    " claims, user_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        project_id,
                        project,
                        int(project_id is None),
                        kind,
                        issuer,
                        json.dumps(claims, sort_keys=True),
                        user_id,
                        now,
                    ),
                )
                publisher_id = int(cursor.fetchone()[0])
        except integrity_errors() as exc:
            raise Conflict(f"that publisher is already registered for {project!r}") from exc
        return publisher_id

    def list_publishers(self, project: str | None = None) -> list[Publisher]:
        rows = self.conn.execute(
            _SELECT_PUBLISHERS + " WHERE ? IS NULL OR p.project_name = ? ORDER BY p.id",
            (project, project),
        ).fetchall()
        return [_publisher_from(row) for row in rows]

    def get_publisher(self, publisher_id: int) -> Publisher | None:
        row = self.conn.execute(_SELECT_PUBLISHERS + " WHERE p.id = ?", (publisher_id,)).fetchone()
        return _publisher_from(row) if row else None

    def publishers_for_issuer(self, issuer: str) -> list[Publisher]:
        rows = self.conn.execute(
            _SELECT_PUBLISHERS + " WHERE p.issuer = ? ORDER BY p.id", (issuer,)
        ).fetchall()
        return [_publisher_from(row) for row in rows]

    def remove_publisher(self, publisher_id: int, now: str) -> bool:
        """Delete a publisher and revoke the tokens it minted that are still alive: removing
        a publisher after a leak must end what the leak gave, not only future exchanges."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET revoked = ? WHERE revoked IS NULL AND id IN"
                " (SELECT token_id FROM minted_tokens WHERE publisher_id = ?)",
                (now, publisher_id),
            )
            cursor = conn.execute("DELETE FROM publishers WHERE id = ?", (publisher_id,))
        return cursor.rowcount == 1

    def spend_jti(self, issuer: str, jti: str, expires: str, now: str) -> bool:
        """Remember an OIDC token id until its token expires; False when it was already
        spent (a replay). Expired ids are forgotten on the way: their tokens fail on `exp`."""
        try:
            with self.transaction() as conn:
                conn.execute("DELETE FROM oidc_seen WHERE expires < ?", (now,))
                conn.execute(
                    "INSERT INTO oidc_seen (issuer, jti, expires) VALUES (?, ?, ?)",
                    (issuer, jti, expires),
                )
        except integrity_errors():
            return False
        return True

    def add_minted_token(
        self,
        publishers: list[Publisher],
        digest: str,
        *,
        expires: str,
        note: str,
        run: tuple[str, str, str, str],
        now: str,
    ) -> int:
        """An upload token for the publishers' projects, owned by their registrar (one user:
        the caller checks), and where it came from (repository, workflow, ref, run id), in
        one transaction."""
        projects = sorted({publisher.project for publisher in publishers})
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO tokens (user_id, digest, scope, projects, allow_ips, note, created,"
                " expires) VALUES (?, ?, 'upload', ?, '[]', ?, ?, ?) RETURNING id",
                (publishers[0].user_id, digest, json.dumps(projects), note, now, expires),
            )
            token_id = int(cursor.fetchone()[0])
            conn.executemany(
                "INSERT INTO minted_tokens (token_id, publisher_id, repository, workflow, ref,"
                " run_id) VALUES (?, ?, ?, ?, ?, ?)",
                [(token_id, publisher.id, *run) for publisher in publishers],
            )
        return token_id

    def bind_pending_publisher(self, publisher_id: int, project_id: int) -> None:
        """A pending publisher whose first upload created its project now belongs to it."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE publishers SET project_id = ?, pending = 0 WHERE id = ?",
                (project_id, publisher_id),
            )

    def minted_details(self) -> dict[int, tuple[str, str, str, str]]:
        """token id -> (repository, workflow, ref, run id) of every minted token."""
        rows = self.conn.execute(
            "SELECT DISTINCT token_id, repository, workflow, ref, run_id FROM minted_tokens"
        ).fetchall()
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}
