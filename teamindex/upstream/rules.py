"""The admin's origin controls as the policy reads them: protected patterns and per-project
upstream mode and min-age.

They live in SQLite (migration 0007, db/upstream.py), so backups carry them and every process
sees a change on its next request: the store keeps the decoded rules while the database's
upstream serial stands still (one small statement, or none when the caller already read
the serial in its own statement, as the hot path does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from ..models import UpstreamRules
from .policy import Mode

if TYPE_CHECKING:
    from ..db import Database


@dataclass(frozen=True)
class ProjectRule:
    mode: Mode | None = None
    min_age: timedelta | None = None  # None: the index default


@dataclass(frozen=True)
class Rules:
    protected: tuple[str, ...] = ()
    projects: dict[str, ProjectRule] = field(default_factory=dict)
    serial: int = -1  # the upstream serial these were read at

    def rule(self, name: str) -> ProjectRule:
        return self.projects.get(name, ProjectRule())


def decode(stored: UpstreamRules) -> Rules:
    projects = {
        rule.name: ProjectRule(
            Mode(rule.mode) if rule.mode else None,
            timedelta(seconds=rule.min_age) if rule.min_age is not None else None,
        )
        for rule in stored.projects
    }
    return Rules(stored.protected, projects, stored.serial)


class RulesStore:
    """The rules of one database, re-read only when its upstream serial moved."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._rules = Rules()

    def current(self) -> Rules:
        return self.at(self.db.upstream_serial())

    def at(self, serial: int) -> Rules:
        """The rules at `serial` (read by the caller in its own statement)."""
        rules = self._rules
        if rules.serial == serial:
            return rules
        with self._lock:
            if self._rules.serial != serial:
                self._rules = decode(self.db.upstream_rules())
            return self._rules
