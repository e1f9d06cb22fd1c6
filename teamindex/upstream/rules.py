"""The admin's origin controls: protected patterns and per-project upstream mode and min-age.

Kept in one small JSON file under the data dir (`upstream/rules.json`), written by the CLI
under a lock with temp + fsync + rename, and re-read by the server when the file changes
(one stat per request), so a change takes effect on the next request in every process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .policy import Mode

RULES_FILE = "rules.json"


@dataclass(frozen=True)
class ProjectRule:
    mode: Mode | None = None
    min_age: timedelta | None = None  # None: the index default


@dataclass(frozen=True)
class Rules:
    protected: tuple[str, ...] = ()
    projects: dict[str, ProjectRule] = field(default_factory=dict)

    def rule(self, name: str) -> ProjectRule:
        return self.projects.get(name, ProjectRule())


def _decode(data: dict[str, Any]) -> Rules:
    projects = {}
    for name, raw in data.get("projects", {}).items():
        mode = Mode(raw["mode"]) if raw.get("mode") else None
        min_age = timedelta(seconds=raw["min_age"]) if raw.get("min_age") is not None else None
        projects[name] = ProjectRule(mode, min_age)
    return Rules(tuple(data.get("protected", ())), projects)


def _encode(rules: Rules) -> dict[str, Any]:
    projects = {}
    for name, rule in sorted(rules.projects.items()):
        entry: dict[str, Any] = {}
        if rule.mode is not None:
            entry["mode"] = rule.mode.value
        if rule.min_age is not None:
            entry["min_age"] = int(rule.min_age.total_seconds())
        if entry:
            projects[name] = entry
    return {"protected": sorted(set(rules.protected)), "projects": projects}


class RulesStore:
    """Reads (cached by the file's identity) and edits the rules file of one data dir."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RULES_FILE
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._rules = Rules()

    def current(self) -> Rules:
        """The rules as the file says now (re-read only when it was replaced)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return Rules()
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if identity != self._seen:
                self._rules = _decode(json.loads(self.path.read_text(encoding="utf-8")))
                self._seen = identity
            return self._rules

    def edit(self, change: Callable[[Rules], Rules]) -> Rules:
        """Apply `change` under an exclusive lock (two CLI commands never lose an edit)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            exists = self.path.exists()
            before = _decode(json.loads(self.path.read_text("utf-8"))) if exists else Rules()
            after = change(before)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".rules-", suffix=".part")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(_encode(after), handle, indent=1)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(name, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
                raise
        return after

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.path.parent / ".rules.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def with_protected(pattern: str, add: bool) -> Callable[[Rules], Rules]:
    def change(rules: Rules) -> Rules:
        patterns = set(rules.protected)
        if add:
            patterns.add(pattern)
        else:
            patterns.discard(pattern)
        return Rules(tuple(sorted(patterns)), rules.projects)

    return change


def with_project(
    name: str, *, mode: Mode | str | None = "keep", min_age: timedelta | str | None = "keep"
) -> Callable[[Rules], Rules]:
    """A change to one project's rule; "keep" leaves a part as it is, None clears it."""

    def change(rules: Rules) -> Rules:
        old = rules.rule(name)
        new = ProjectRule(
            old.mode if mode == "keep" else mode,  # type: ignore[arg-type]
            old.min_age if min_age == "keep" else min_age,  # type: ignore[arg-type]
        )
        return Rules(rules.protected, {**rules.projects, name: new})

    return change
