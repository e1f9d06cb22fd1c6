"""The upstream proxy (issue 13): one index URL for private and public packages.

`Upstream` joins the parts: the admin's rules (rules.py), the pure policy (policy.py), the
page cache (pages.py) and the file cache (files.py), all over one urllib3 client
(client.py). It exists only when `--upstream` is set; without it the index is exactly what
was uploaded. No Flask here: api/proxy.py turns it into HTTP.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..config import Settings
from .client import UpstreamClient
from .files import FileCache
from .pages import PageCache, UpstreamFile, UpstreamPage
from .policy import (
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
from .rules import Rules, RulesStore
from .stats import Stats

if TYPE_CHECKING:
    from ..db import Database

__all__ = ["Mode", "Origin", "Upstream", "UpstreamFile", "UpstreamPage", "Visibility"]


class Upstream:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.client = None if settings.offline else UpstreamClient(settings.upstream)
        base = settings.upstream_dir
        self.rules = RulesStore(db)
        self.stats = Stats()
        self.pages = PageCache(
            self.client,
            base / "pages",
            ttl=settings.upstream_ttl,
            stale_for=settings.upstream_stale_for,
            stats=self.stats,
        )
        self.files = FileCache(self.client, base, settings.upstream_cache_size, self.stats)

    def ensure_dirs(self) -> None:
        (self.settings.upstream_dir / "pages").mkdir(parents=True, exist_ok=True)
        self.files.ensure_dirs()

    def origin(self, name: str, local: bool, rules: Rules | None = None) -> Origin:
        """`rules`: a snapshot the caller already holds (one read per request)."""
        rules = rules or self.rules.current()
        return origin(
            NameFacts(
                local=local,
                protected=is_protected(name, rules.protected),
                mode=rules.rule(name).mode,
            )
        )

    def age_rule(self, name: str, rules: Rules | None = None) -> AgeRule:
        return age_rule(
            timedelta(seconds=self.settings.upstream_min_age),
            (rules or self.rules.current()).rule(name).min_age,
            self.settings.upstream_exclude_newer,
        )

    def visibility(self, name: str, found: UpstreamFile, rules: Rules | None = None) -> Visibility:
        return visibility(found.upload_time, datetime.now(timezone.utc), self.age_rule(name, rules))

    def visible(
        self, page: UpstreamPage, rules: Rules | None = None, now: datetime | None = None
    ) -> list[UpstreamFile]:
        """The page's files a reader may see at `now` (the cooldown applied)."""
        rule, now = self.age_rule(page.name, rules), now or datetime.now(timezone.utc)
        return [f for f in page.files if visibility(f.upload_time, now, rule) is Visibility.SHOWN]

    def shown_mark(self, page: UpstreamPage, rules: Rules, now: datetime) -> int:
        """policy.shown_mark for this page under the project's rule (see there)."""
        return shown_mark(page.upload_times, now, self.age_rule(page.name, rules))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
