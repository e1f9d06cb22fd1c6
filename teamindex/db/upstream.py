"""The upstream proxy's origin controls (migration 0007): protected patterns, per-name rules.

Every change bumps state.upstream_serial by trigger, so readers keep the rules (and pages
built under them) while the serial stands still and re-read them when it moves, also when
the CLI made the change in another process.
"""

from __future__ import annotations

from ..models import Project, UpstreamRule, UpstreamRules
from .core import Connections
from .rows import project_from

# Columns `set_upstream_rule` may change (never taken from input as SQL).
RULE_COLUMNS = ("mode", "min_age")


class UpstreamQueries(Connections):
    def upstream_serial(self) -> int:
        return self.conn.execute("SELECT upstream_serial FROM state WHERE id = 1").fetchone()[0]

    def upstream_rules(self) -> UpstreamRules:
        """All the rules. The serial is read first: a change racing the read leaves newer
        rules under an older serial, which the next request's serial check replaces."""
        serial = self.upstream_serial()
        patterns = self.conn.execute("SELECT pattern FROM upstream_protected ORDER BY pattern")
        rules = self.conn.execute("SELECT name, mode, min_age FROM upstream_rules ORDER BY name")
        return UpstreamRules(
            serial,
            tuple(row[0] for row in patterns.fetchall()),
            tuple(UpstreamRule(row[0], row[1], row[2]) for row in rules.fetchall()),
        )

    def set_protected(self, pattern: str, protected: bool) -> bool:
        """Add or remove a protected pattern; False when nothing changed."""
        with self.transaction() as conn:
            if protected:
                cursor = conn.execute(
                    "INSERT INTO upstream_protected (pattern) VALUES (?) ON CONFLICT DO NOTHING",
                    (pattern,),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM upstream_protected WHERE pattern = ?", (pattern,)
                )
        return cursor.rowcount == 1

    def set_upstream_rule(self, name: str, changes: dict[str, str | int | None]) -> None:
        """Change `mode` and/or `min_age` of one name (None: back to the default); a rule
        left with neither is deleted."""
        unknown = set(changes) - set(RULE_COLUMNS)
        if unknown or not changes:
            raise ValueError(f"unknown upstream rule fields: {sorted(unknown)}")
        columns = [column for column in RULE_COLUMNS if column in changes]
        values = [changes[column] for column in columns]
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self.transaction() as conn:
            updated = conn.execute(
                f"UPDATE upstream_rules SET {assignments} WHERE name = ?",  # noqa: S608
                (*values, name),
            ).rowcount
            if not updated and any(value is not None for value in values):
                conn.execute(
                    f"INSERT INTO upstream_rules (name, {', '.join(columns)})"  # noqa: S608
                    f" VALUES (?, {', '.join('?' for _ in columns)})",
                    (name, *values),
                )
            conn.execute(
                "DELETE FROM upstream_rules WHERE name = ? AND mode IS NULL AND min_age IS NULL",
                (name,),
            )

    def proxy_facts_at(
        self, name: str, user_id: int | None
    ) -> tuple[int, int, Project | None, str | None]:
        """(auth serial, upstream serial, project, the user's role) in one statement: the hot
        path's only database read for a project page when an upstream is configured."""
        row = self.conn.execute(
            "SELECT s.auth_serial, s.upstream_serial, p.id, p.name, p.display_name, p.serial,"
            " p.visibility, r.role FROM state s LEFT JOIN projects p ON p.name = ?"
            " LEFT JOIN roles r ON r.project_id = p.id AND r.user_id = ? WHERE s.id = 1",
            (name, user_id),
        ).fetchone()
        project = project_from(row) if row["id"] is not None else None
        return row["auth_serial"], row["upstream_serial"], project, row["role"]
