"""upstream.policy, cell by cell: which names go upstream, which upstream files are shown."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from teamindex.config import load_settings
from teamindex.db import Database
from teamindex.upstream.policy import (
    AgeRule,
    Mode,
    NameFacts,
    Origin,
    Visibility,
    age_rule,
    is_protected,
    origin,
    shown_mark,
    visibility,
)
from teamindex.upstream.rules import RulesStore

A, D = Mode.ALLOW, Mode.DENY


@pytest.mark.parametrize(
    ("local", "protected", "mode", "expected"),
    [
        # No rule: private names win, everything else is upstream's.
        (False, False, None, Origin.UPSTREAM),
        (True, False, None, Origin.LOCAL),  # uploaded or reserved by `project create`
        (False, True, None, Origin.LOCAL),  # `teamindex protect 'acme-*'`
        (True, True, None, Origin.LOCAL),
        # The admin's opt-in to mixing beats both.
        (True, False, A, Origin.MIXED),
        (True, True, A, Origin.MIXED),
        (False, True, A, Origin.UPSTREAM),
        (False, False, A, Origin.UPSTREAM),
        # deny keeps a name private even when nothing here has it.
        (False, False, D, Origin.LOCAL),
        (True, False, D, Origin.LOCAL),
        (False, True, D, Origin.LOCAL),
        (True, True, D, Origin.LOCAL),
    ],
)
def test_origin(local: bool, protected: bool, mode: Mode | None, expected: Origin) -> None:
    assert origin(NameFacts(local, protected, mode)) is expected


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("acme-utils", ("acme-*",), True),
        ("acme", ("acme-*",), False),
        ("team-acme-x", ("acme-*",), False),
        ("six", (), False),
        ("six", ("acme-*", "six"), True),
    ],
)
def test_is_protected(name: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert is_protected(name, patterns) is expected


NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
CUTOFF = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("uploaded", "min_age", "cutoff", "expected"),
    [
        (NOW - 5 * DAY, 3 * DAY, None, Visibility.SHOWN),
        (NOW - 3 * DAY, 3 * DAY, None, Visibility.SHOWN),  # exactly old enough
        (NOW - 3 * DAY + timedelta(seconds=1), 3 * DAY, None, Visibility.TOO_YOUNG),
        (NOW - timedelta(hours=1), 3 * DAY, None, Visibility.TOO_YOUNG),
        (NOW + DAY, 3 * DAY, None, Visibility.TOO_YOUNG),  # a clock ahead of ours
        (None, 3 * DAY, None, Visibility.NO_UPLOAD_TIME),
        # min-age 0 (an exemption) and no cut-off: no age rule, nothing to hold back.
        (NOW - timedelta(seconds=1), timedelta(0), None, Visibility.SHOWN),
        (None, timedelta(0), None, Visibility.SHOWN),
        # The cut-off date, alone and with min-age.
        (CUTOFF - DAY, timedelta(0), CUTOFF, Visibility.SHOWN),
        (CUTOFF, timedelta(0), CUTOFF, Visibility.SHOWN),
        (CUTOFF + timedelta(seconds=1), timedelta(0), CUTOFF, Visibility.AFTER_CUTOFF),
        (None, timedelta(0), CUTOFF, Visibility.NO_UPLOAD_TIME),
        (NOW - timedelta(hours=1), 3 * DAY, CUTOFF, Visibility.AFTER_CUTOFF),
        (CUTOFF - DAY, 3 * DAY, CUTOFF, Visibility.SHOWN),
    ],
)
def test_visibility(
    uploaded: datetime | None, min_age: timedelta, cutoff: datetime | None, expected: Visibility
) -> None:
    assert visibility(uploaded, NOW, AgeRule(min_age, cutoff)) is expected


@pytest.mark.parametrize(
    ("default", "project", "expected"),
    [
        (3 * DAY, None, 3 * DAY),
        (3 * DAY, timedelta(0), timedelta(0)),  # `project set NAME --min-age 0`
        (3 * DAY, 7 * DAY, 7 * DAY),  # a stricter one for a risky project
        (timedelta(0), DAY, DAY),
    ],
)
def test_age_rule_project_replaces_default(
    default: timedelta, project: timedelta | None, expected: timedelta
) -> None:
    assert age_rule(default, project, None).min_age == expected


def test_rules_live_in_the_database_and_other_processes_see_changes(tmp_path) -> None:
    """Two connections to one file stand for the CLI and a server: the reader re-reads only
    when the upstream serial moved, and sees every change on its next call."""
    writer, reading = Database(tmp_path / "db.sqlite3"), Database(tmp_path / "db.sqlite3")
    writer.migrate()
    reader = RulesStore(reading)
    assert reader.current().protected == ()
    start = reading.upstream_serial()
    assert writer.set_protected("acme-*", True)
    assert not writer.set_protected("acme-*", True)  # already there: nothing changes
    writer.set_upstream_rule("six", {"mode": "allow"})
    writer.set_upstream_rule("six", {"min_age": 0})
    rules = reader.current()
    assert rules.protected == ("acme-*",)
    assert rules.rule("six").mode is Mode.ALLOW
    assert rules.rule("six").min_age == timedelta(0)
    assert rules.serial == start + 3
    assert reader.at(rules.serial) is rules  # unchanged serial: nothing re-read
    assert writer.set_protected("acme-*", False)
    assert not writer.set_protected("acme-*", False)
    writer.set_upstream_rule("six", {"mode": None})
    assert reader.current().protected == ()
    assert reader.current().rule("six").mode is None
    assert reader.current().rule("six").min_age == timedelta(0)
    writer.set_upstream_rule("six", {"min_age": None})  # nothing left: the row goes
    assert writer.upstream_rules().projects == ()
    writer.set_upstream_rule("never", {"mode": None})  # clearing a missing rule: no row
    assert writer.upstream_rules().projects == ()
    with pytest.raises(ValueError, match="unknown upstream rule fields"):
        writer.set_upstream_rule("six", {"visibility": "team"})


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("TEAMINDEX_UPSTREAM_TTL", "10m", "upstream_ttl", 600),
        ("TEAMINDEX_UPSTREAM_TTL", "45", "upstream_ttl", 45),
        ("TEAMINDEX_UPSTREAM_STALE_FOR", "7d", "upstream_stale_for", 7 * 86400),
        ("TEAMINDEX_UPSTREAM_MIN_AGE", "0", "upstream_min_age", 0),
        ("TEAMINDEX_UPSTREAM_CACHE_SIZE", "20G", "upstream_cache_size", 20 << 30),
        ("TEAMINDEX_OFFLINE", "yes", "offline", True),
        (
            "TEAMINDEX_UPSTREAM_EXCLUDE_NEWER",
            "2026-05-01",
            "upstream_exclude_newer",
            datetime(2026, 5, 1, tzinfo=timezone.utc),
        ),
        (
            "TEAMINDEX_UPSTREAM",
            "http://127.0.0.1:9/simple",
            "upstream",
            "http://127.0.0.1:9/simple/",
        ),
    ],
)
def test_upstream_settings(variable: str, value: str, field: str, expected: object) -> None:
    assert getattr(load_settings({}, {variable: value}), field) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMINDEX_UPSTREAM_TTL", "10 minutes"),
        ("TEAMINDEX_UPSTREAM_TTL", "-5"),
        ("TEAMINDEX_UPSTREAM", "ftp://127.0.0.1/simple/"),
        ("TEAMINDEX_UPSTREAM", "not a url"),
        ("TEAMINDEX_UPSTREAM_EXCLUDE_NEWER", "yesterday"),
    ],
)
def test_bad_upstream_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        load_settings({}, {variable: value})


def test_upstream_password_is_never_shown() -> None:
    settings = load_settings({}, {"TEAMINDEX_UPSTREAM": "https://bot:s3cret@127.0.0.1/simple/"})
    assert "s3cret" not in repr(settings)
    from teamindex.config import redact_url

    assert redact_url(settings.upstream) == "https://bot:****@127.0.0.1/simple/"


def test_the_mark_names_exactly_the_files_visibility_shows() -> None:
    """shown_mark (what cached proxied pages key on) against visibility, over many
    upload-times and rules: the first `mark` sorted dated files, or all when -1."""
    import random

    rng = random.Random(13)
    for _ in range(500):
        times = [NOW - timedelta(hours=rng.randint(0, 200)) for _ in range(rng.randint(0, 8))]
        rule = AgeRule(
            timedelta(hours=rng.choice([0, 1, 24, 72])),
            rng.choice([None, NOW - timedelta(hours=rng.randint(0, 100))]),
        )
        dated = tuple(sorted(times))
        mark = shown_mark(dated, NOW, rule)
        shown = sorted(t for t in times if visibility(t, NOW, rule) is Visibility.SHOWN)
        undated_shown = visibility(None, NOW, rule) is Visibility.SHOWN
        if mark == -1:
            assert shown == list(dated) and undated_shown
        else:
            assert shown == list(dated[:mark]) and not undated_shown
        later = shown_mark(dated, NOW + timedelta(hours=rng.randint(0, 50)), rule)
        assert later == -1 if mark == -1 else later >= mark  # the shown set only grows
