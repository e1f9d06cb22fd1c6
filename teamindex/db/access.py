"""Access control: projects' visibility and roles, tokens, allowlists, audit log."""

from __future__ import annotations

import json

from ..models import (
    AllowEntry,
    AuditEvent,
    Project,
    Token,
)
from .core import Conflict, Connections, integrity_errors
from .rows import (
    SELECT_API_KEYS,
    bump_serial,
    token_from,
)


class AccessQueries(Connections):
    def create_project(self, name: str, display_name: str, visibility: str, now: str) -> Project:
        """Reserve a project name ahead of its first upload (admins only, checked by caller)."""
        try:
            with self.transaction() as conn:
                serial = bump_serial(conn)
                conn.execute(
                    "INSERT INTO projects (name, display_name, created, serial, visibility)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, display_name, now, serial, visibility),
                )
        except integrity_errors() as exc:
            raise Conflict(f"project {name!r} already exists") from exc
        project = self.get_project(name)
        assert project is not None
        return project

    def set_visibility(self, name: str, visibility: str) -> bool:
        with self.transaction() as conn:
            serial = bump_serial(conn)
            cursor = conn.execute(
                "UPDATE projects SET visibility = ?, serial = ? WHERE name = ?",
                (visibility, serial, name),
            )
        return cursor.rowcount == 1

    def set_role(self, user_id: int, project_id: int, role: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO roles (user_id, project_id, role) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, project_id) DO UPDATE SET role = excluded.role",
                (user_id, project_id, role),
            )
            bump_serial(conn)  # root listings of restricted projects depend on roles

    def remove_role(self, user_id: int, project_id: int) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM roles WHERE user_id = ? AND project_id = ?", (user_id, project_id)
            )
            bump_serial(conn)
        return cursor.rowcount == 1

    def project_roles(self, project_id: int) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT u.name, r.role FROM roles r JOIN users u ON u.id = r.user_id"
            " WHERE r.project_id = ? ORDER BY r.role, u.name",
            (project_id,),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def project_counts(self, project_id: int) -> tuple[int, int, int]:
        """(releases, files, bytes) of a project."""
        row = self.conn.execute(
            "SELECT count(DISTINCT r.id), count(f.id), CAST(coalesce(sum(f.size), 0) AS BIGINT)"
            " FROM releases r"
            " LEFT JOIN files f ON f.release_id = r.id WHERE r.project_id = ?",
            (project_id,),
        ).fetchone()
        return row[0], row[1], row[2]

    def add_token(
        self,
        user_id: int,
        digest: str,
        *,
        scope: str,
        projects: list[str],
        allow_ips: list[str],
        note: str,
        expires: str | None,
        now: str,
    ) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO tokens (user_id, digest, scope, projects, allow_ips, note, created,"
                " expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    user_id,
                    digest,
                    scope,
                    json.dumps(projects),
                    json.dumps(allow_ips),
                    note,
                    now,
                    expires,
                ),
            )
            token_id = int(cursor.fetchone()[0])
        return token_id

    def token_by_digest(self, digest: str) -> Token | None:
        row = self.conn.execute(SELECT_API_KEYS + " WHERE t.digest = ?", (digest,)).fetchone()
        return token_from(row) if row else None

    def get_token(self, token_id: int) -> Token | None:
        row = self.conn.execute(SELECT_API_KEYS + " WHERE t.id = ?", (token_id,)).fetchone()
        return token_from(row) if row else None

    def list_tokens(self, user_id: int | None = None) -> list[Token]:
        rows = self.conn.execute(
            SELECT_API_KEYS + " WHERE ? IS NULL OR t.user_id = ? ORDER BY t.id", (user_id, user_id)
        ).fetchall()
        return [token_from(row) for row in rows]

    def revoke_token(self, token_id: int, now: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, token_id)
            )
        return cursor.rowcount == 1

    def replace_token_digest(self, token_id: int, digest: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE tokens SET digest = ? WHERE id = ? AND revoked IS NULL", (digest, token_id)
            )
        return cursor.rowcount == 1

    def touch_token(self, token_id: int, now: str, ip: str) -> None:
        """Record a token's last use; best effort: skipped while another writer holds the
        lock (the token's request must not wait for it, let alone fail)."""
        with self.skippable("a token's last-use time"), self.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET last_used = ?, last_ip = ? WHERE id = ?", (now, ip, token_id)
            )

    def add_allow(self, cidr: str, user_id: int | None, note: str, now: str) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(
                    "INSERT INTO allowlist (user_id, cidr, note, created) VALUES (?, ?, ?, ?)",
                    (user_id, cidr, note, now),
                )
        except integrity_errors() as exc:
            raise Conflict(f"{cidr} is already on that allowlist") from exc

    def remove_allow(self, cidr: str, user_id: int | None) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM allowlist WHERE cidr = ? AND coalesce(user_id, 0) = coalesce(?, 0)",
                (cidr, user_id),
            )
        return cursor.rowcount == 1

    def allowlist(self, user_id: int | None) -> list[str]:
        """CIDRs of the global list (user_id None) or of one user's list."""
        rows = self.conn.execute(
            "SELECT cidr FROM allowlist WHERE coalesce(user_id, 0) = coalesce(?, 0)", (user_id,)
        ).fetchall()
        return [row[0] for row in rows]

    def list_allow_entries(self) -> list[AllowEntry]:
        rows = self.conn.execute(
            "SELECT a.id, a.cidr, a.note, u.name FROM allowlist a"
            " LEFT JOIN users u ON u.id = a.user_id ORDER BY u.name IS NOT NULL, u.name, a.cidr"
        ).fetchall()
        return [AllowEntry(row[0], row[1], row[2], row[3]) for row in rows]

    def add_audit(self, event: AuditEvent) -> None:
        self.add_audits([event])

    def add_audits(self, events: list[AuditEvent]) -> None:
        """Write audit rows in one transaction (download records come in batches)."""
        with self.transaction() as conn:
            conn.executemany(
                'INSERT INTO audit (time, ip, "user", token_id, action, project, filename,'
                " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        event.time,
                        event.ip,
                        event.user,
                        event.token_id,
                        event.action,
                        event.project,
                        event.filename,
                        event.outcome,
                        event.detail,
                    )
                    for event in events
                ],
            )

    def query_audit(
        self,
        *,
        since: str,
        user: str | None = None,
        project: str | None = None,
        action: str | None = None,
        limit: int = 10_000,
        newest_first: bool = False,
        before: int | None = None,
    ) -> list[AuditEvent]:
        """Events since `since` (and with ids below `before`), filtered; oldest first, or
        the latest `limit` newest first (the web view and the CLI, which page on ids)."""
        filters = (since, user, user, project, project, action, action, before, before)
        rows = self.conn.execute(
            'SELECT time, ip, "user", token_id, action, project, filename, outcome, detail, id'
            ' FROM audit WHERE time >= ? AND (? IS NULL OR "user" = ?)'
            " AND (? IS NULL OR project = ?) AND (? IS NULL OR action = ?)"
            " AND (? IS NULL OR id < ?)"
            " ORDER BY CASE WHEN ? THEN -id ELSE id END LIMIT ?",  # ids grow with time
            (*filters, newest_first, limit),
        ).fetchall()
        return [AuditEvent(*row) for row in rows]

    def prune_audit(self, before: str) -> int:
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM audit WHERE time < ?", (before,))
            conn.execute("DELETE FROM download_counts WHERE day < substr(?, 1, 10)", (before,))
        return cursor.rowcount

    def add_download_counts(self, day: str, counts: dict[tuple[str, str], int]) -> None:
        """Add per-file download counts for one day; counts maps (project, filename) -> n."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO download_counts (day, filename, project, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (day, filename) DO UPDATE"
                " SET count = download_counts.count + excluded.count",
                [(day, filename, project, n) for (project, filename), n in counts.items()],
            )

    def download_counts(self, since_day: str) -> list[tuple[str, str, str, int]]:
        rows = self.conn.execute(
            "SELECT day, project, filename, count FROM download_counts WHERE day >= ?"
            " ORDER BY day, filename",
            (since_day,),
        ).fetchall()
        return [(row[0], row[1], row[2], row[3]) for row in rows]
