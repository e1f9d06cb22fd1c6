"""/admin/upstream: the upstream proxy's origin controls (issue 13), as the CLI edits them.

Lists the protected patterns, the per-project rules (upstream allow|deny, min-age) and the
local projects that shadow upstream, and edits them with the same checks and the same audit
actions as `teamindex protect` and `teamindex project set --upstream/--min-age`
(protect_add, protect_remove, project_set). Nested in the admin blueprint: administrators
with a password only, tokens refused, CSRF checked. The rules live in the database, and
every process re-reads them when their serial moves, so an edit takes effect on the next
proxied request. Nothing here
asks upstream anything: which local names also exist upstream would cost one request per
project, so the page lists what policy shadows instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, Response, flash, redirect, request, url_for

from ..access.httpauth import client_ip
from ..config import parse_duration
from ..context import services
from ..errors import HTTPError
from ..index.dists import DistributionError, project_pattern, validate_project_name
from ..upstream.policy import Mode, NameFacts, Origin, is_protected, origin
from ..upstream.rules import Rules, RulesStore
from .base import page, require_admin

bp = Blueprint("upstream", __name__)
MODES = ("keep", "allow", "deny", "default")


@dataclass(frozen=True)
class Shadow:
    """A local project and what becomes of its name upstream."""

    name: str
    origin: Origin  # LOCAL: upstream never asked; MIXED: an admin allowed mixing
    why: str


def _store() -> RulesStore:
    """The server's own store when it proxies (its cache is the one to see the edit), else
    one over the same database (the rules apply once --upstream is set)."""
    svc = services()
    if svc.upstream is not None:
        return svc.upstream.rules
    return RulesStore(svc.db)


def _shadows(rules: Rules, names: list[str]) -> list[Shadow]:
    found = []
    for name in names:
        rule = rules.rule(name)
        protected = is_protected(name, rules.protected)
        where = origin(NameFacts(local=True, protected=protected, mode=rule.mode))
        if where is Origin.MIXED:
            why = "upstream allow: mixes upstream's files"
        elif rule.mode is Mode.DENY:
            why = "upstream deny"
        elif protected:
            why = "exists here; matches a protected pattern"
        else:
            why = "exists here"
        found.append(Shadow(name, where, why))
    return found


def _min_age_text(value: timedelta | None) -> str:
    if value is None:
        return "index default"
    seconds = int(value.total_seconds())
    return "0 (exempt)" if seconds == 0 else f"{seconds} s"


@bp.get("/upstream")
def overview() -> Response:
    svc = services()
    rules = _store().current()
    return page(
        "admin_upstream.html",
        configured=svc.upstream is not None,
        settings=svc.settings,
        protected=rules.protected,
        projects=sorted(rules.projects.items()),
        min_age_text=_min_age_text,
        shadows=_shadows(rules, svc.db.project_names()),
        modes=MODES,
    )


def _record(action: str, **fields: str) -> None:
    services().audit.record(action, user=require_admin().name, ip=client_ip(), **fields)


def _back(message: str) -> Response:
    flash(message)
    return redirect(url_for("web.admin.upstream.overview"), code=303)


@bp.post("/upstream/protect")
def protect() -> Response:
    """`teamindex protect PATTERN` / `protect remove PATTERN` (remove=yes)."""
    remove = request.form.get("remove") == "yes"
    try:
        pattern = project_pattern(request.form.get("pattern", "").strip())
    except (DistributionError, ValueError) as exc:
        raise HTTPError(400, f"Not {'removed' if remove else 'protected'}: {exc}") from None
    if remove and pattern not in _store().current().protected:
        raise HTTPError(404, f"{pattern!r} is not protected.")
    services().db.set_protected(pattern, not remove)
    _record("protect_remove" if remove else "protect_add", detail=pattern)
    return _back(f"{'No longer protected' if remove else 'Protected'}: {pattern}.")


@bp.post("/upstream/project")
def project_set() -> Response:
    """`teamindex project set NAME --upstream allow|deny|default --min-age DURATION|default`;
    the name need not exist here (an upstream project can be exempted from the cooldown)."""
    form = request.form
    upstream = form.get("upstream", "keep") or "keep"
    min_age_text = form.get("min_age", "").strip()
    if upstream not in MODES:
        raise HTTPError(400, "Upstream is allow, deny or default.")
    if upstream == "keep" and not min_age_text:
        raise HTTPError(400, "Nothing to change: choose an upstream mode or give a min-age.")
    try:
        name = validate_project_name(form.get("name", "").strip())
        changes: dict[str, str | int | None] = {}
        if min_age_text:
            default = min_age_text == "default"
            changes["min_age"] = None if default else parse_duration(min_age_text)
    except (DistributionError, ValueError) as exc:
        raise HTTPError(400, f"Not changed: {exc}") from None
    if upstream != "keep":
        changes["mode"] = None if upstream == "default" else Mode(upstream).value
    services().db.set_upstream_rule(name, changes)
    detail = " ".join(
        part
        for part in (
            f"upstream={upstream}" if upstream != "keep" else "",
            f"min-age={min_age_text}" if min_age_text else "",
        )
        if part
    )
    _record("project_set", project=name, detail=detail)
    return _back(f"{name}: {detail}.")
