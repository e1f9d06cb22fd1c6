"""Which names go upstream, and which upstream files a reader may see. Pure: no Flask, no SQL.

Like permissions.decide, callers gather plain facts and get a plain answer, so every cell of
the table is tested on its own (tests/test_upstream_policy.py).

Private names always win (dependency confusion, issue 13): a project that exists here (with
files, or reserved by `project create`) or matches a protected pattern is LOCAL — its name is
never sent upstream and no upstream file is shown for it — unless an admin opted it into
mixing (`project set NAME --upstream allow`). peryx's default merges private and public
versions and devpi needed a whitelist to stop it; here mixing is the exception, named per
project.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from fnmatch import fnmatchcase


class Origin(Enum):
    LOCAL = "local"  # only this index's files; the name is never sent upstream
    UPSTREAM = "upstream"  # only upstream's files (no such project here)
    MIXED = "mixed"  # this index's files, then upstream's under other filenames


class Mode(Enum):
    """A per-project origin control set by an admin (`project set NAME --upstream ...`)."""

    ALLOW = "allow"  # mix: upstream's files beside (or instead of) local ones
    DENY = "deny"  # never upstream, even for a name that does not exist here


@dataclass(frozen=True)
class NameFacts:
    """What the origin of a name depends on."""

    local: bool  # a project row exists here (uploaded, or reserved by `project create`)
    protected: bool  # matches a `teamindex protect` pattern
    mode: Mode | None = None  # the admin's per-project control, if any


def is_protected(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a normalized name matches one of the protected globs (`acme-*`)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def origin(facts: NameFacts) -> Origin:
    """LOCAL, UPSTREAM or MIXED for a name, on an index that has an upstream."""
    if facts.mode is Mode.ALLOW:
        return Origin.MIXED if facts.local else Origin.UPSTREAM
    if facts.local or facts.protected or facts.mode is Mode.DENY:
        return Origin.LOCAL
    return Origin.UPSTREAM


class Visibility(Enum):
    SHOWN = "shown"
    TOO_YOUNG = "too young"  # uploaded upstream less than min-age ago
    NO_UPLOAD_TIME = "no upload-time"  # age unknown while an age rule applies: held back
    AFTER_CUTOFF = "after cut-off"  # uploaded after --upstream-exclude-newer


@dataclass(frozen=True)
class AgeRule:
    """The cooldown in force for one project: its min-age (the project's exemption, else
    the index default) and the fixed cut-off date, if any."""

    min_age: timedelta
    exclude_newer: datetime | None = None

    @property
    def applies(self) -> bool:
        return self.min_age > timedelta(0) or self.exclude_newer is not None


def age_rule(
    default_min_age: timedelta, project_min_age: timedelta | None, exclude_newer: datetime | None
) -> AgeRule:
    """The project's own min-age (`project set NAME --min-age 0`) replaces the default."""
    return AgeRule(default_min_age if project_min_age is None else project_min_age, exclude_newer)


def visibility(upload_time: datetime | None, now: datetime, rule: AgeRule) -> Visibility:
    """Whether one upstream file is shown. The age counts from upstream's upload-time, never
    from when this index first fetched it (a cooldown from first fetch lets a day-old
    malicious release through to the first team that asks after the cooldown started)."""
    if not rule.applies:
        return Visibility.SHOWN
    if upload_time is None:
        return Visibility.NO_UPLOAD_TIME
    if rule.exclude_newer is not None and upload_time > rule.exclude_newer:
        return Visibility.AFTER_CUTOFF
    if now - upload_time < rule.min_age:
        return Visibility.TOO_YOUNG
    return Visibility.SHOWN


def shown_mark(upload_times: tuple[datetime, ...], now: datetime, rule: AgeRule) -> int:
    """Which of a page's files `visibility` shows at `now`, as one number: -1 when no age
    rule applies (all of them), else how many of the sorted upload-times lie at or before
    the cut (min(now - min-age, exclude-newer)). The shown set only grows with that count
    (a file's age only grows), so for one copy of a page and one rule the mark names the
    set exactly: a page built under a mark stays right until the mark moves, which is
    when a held-back file comes of age. O(log n) per request instead of a rebuild."""
    if not rule.applies:
        return -1
    cut = now - rule.min_age
    if rule.exclude_newer is not None and rule.exclude_newer < cut:
        cut = rule.exclude_newer
    return bisect_right(upload_times, cut)
