"""The one permission rule every route and command asks. Pure: no Flask, no SQL.

Callers gather the facts (who is asking, with which token, about which project and with
what role) into plain values and get back ALLOW, DENY (403) or HIDE (404). HIDE exists so
that a restricted project is indistinguishable from one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from functools import lru_cache

from ..config import parse_new_projects
from ..models import Project, Token, User


class Action(Enum):
    READ = "read"  # simple pages, files, metadata
    UPLOAD = "upload"
    YANK = "yank"  # yank / unyank
    DELETE = "delete"
    MANAGE = "manage"  # grants, visibility


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"  # 403: the project is visible to the caller but the action is not allowed
    HIDE = "hide"  # 404: the caller may not even know the project exists
    # 403: the name is free (or hidden from the caller, which must look the same) and the
    # creation policy keeps new projects for administrators or for some name prefixes.
    NOT_CREATOR = "not_creator"


@dataclass(frozen=True)
class CreatePolicy:
    """Who may create a project by uploading to a free name (`serve --new-projects`):
    "anyone", "admins" or "prefix" with normalized name prefixes. Admins always may."""

    mode: str = "anyone"
    prefixes: tuple[str, ...] = ()

    @staticmethod
    @lru_cache(maxsize=8)
    def of(setting: str) -> CreatePolicy:
        """The policy of a --new-projects value (parsed once per distinct value)."""
        mode, prefixes = parse_new_projects(setting)
        return CreatePolicy(mode, prefixes)

    def allows(self, principal: Principal, name: str) -> bool:
        """Whether `principal` may create the normalized name `name`."""
        if principal.is_admin or self.mode == "anyone":
            return True
        return self.mode == "prefix" and name.startswith(self.prefixes)

    def describe(self) -> str:
        """Who may create projects, in words for a refusal."""
        if self.mode == "prefix":
            starts = " or ".join(repr(p) for p in self.prefixes)
            return f"administrators (others: names starting with {starts})"
        return "administrators" if self.mode != "anyone" else "anyone"


ANYONE_CREATES = CreatePolicy()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (None = anonymous reader) and the token used, if any."""

    user: User | None
    token: Token | None = None

    @property
    def name(self) -> str:
        return self.user.name if self.user else "anonymous"

    @property
    def is_admin(self) -> bool:
        return bool(self.user and self.user.is_admin)


ANONYMOUS = Principal(None)


def listing_view(principal: Principal) -> str:
    """Whose view of the project list this is: restricted projects and a token's project
    list make it differ between callers, so the root page is cached per view."""
    if principal.token is not None and principal.token.projects:
        return f"token:{principal.token.id}"
    if principal.is_admin:
        return "admin"
    return f"user:{principal.user.id}" if principal.user else "anonymous"


@dataclass(frozen=True)
class ProjectFacts:
    """What the caller's rights depend on; `role` is the caller's role in the project."""

    name: str
    exists: bool
    visibility: str = "team"
    role: str | None = None

    @classmethod
    def of(cls, name: str, project: Project | None, role: str | None) -> ProjectFacts:
        """The facts for `name` from its row (None when there is no such project)."""
        if project is None:
            return cls(name=name, exists=False, role=role)
        return cls(name=name, exists=True, visibility=project.visibility, role=role)


# What each role may do, beyond reading (admins may do everything).
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "owner": frozenset({Action.READ, Action.UPLOAD, Action.YANK, Action.MANAGE}),
    "maintainer": frozenset({Action.READ, Action.UPLOAD, Action.YANK}),
    "reader": frozenset({Action.READ}),
}
ROLES = tuple(ROLE_ACTIONS)
# What a token scope permits at most; a token only ever narrows its owner's rights.
SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    "read": frozenset({Action.READ}),
    "upload": frozenset({Action.READ, Action.UPLOAD}),
}
SCOPES = tuple(SCOPE_ACTIONS)


def may_ever(principal: Principal, action: Action) -> bool:
    """Whether `action` could be allowed on any project at all, from the credentials alone:
    checked before a request body is parsed, so a read-only token or an anonymous reader
    cannot make the server store an upload it will refuse anyway (issue 10). The answer does
    not depend on the project, so it reveals nothing about which projects exist."""
    if action is Action.READ:
        return True
    if principal.user is None:
        return False
    return principal.token is None or action in SCOPE_ACTIONS[principal.token.scope]


def token_limit(principal: Principal, action: Action, name: str) -> str | None:
    """Why the caller's token by itself refuses `action` on `name`, or None when it does not.

    decide() checks the token before anything about the project, so this reason is the same
    whether `name` exists, is restricted or is free: it only tells the holder what their own
    token says, and names the token rather than blaming the user (issue 12)."""
    token = principal.token
    if token is None:
        return None
    if action not in SCOPE_ACTIONS[token.scope]:
        return scope_refusal(token, action, principal.name)
    if not token_covers(token, name):
        return (
            f"This token (id {token.id}) is limited to projects {', '.join(token.projects)};"
            f" {name!r} is outside it."
        )
    return None


def scope_refusal(token: Token, action: Action, user_name: str) -> str:
    """The message for an action outside a token's scope, with the way out."""
    head = f"This token (id {token.id}, scope {token.scope}) cannot {action.value}"
    if any(action in actions for actions in SCOPE_ACTIONS.values()):
        return (
            f"{head}; create a token with scope {action.value} on your account page or with:"
            f" teamindex token create {user_name} --scope {action.value}"
        )
    return f"{head}: no token can; use your user name and password."


def token_covers(token: Token, project: str) -> bool:
    """Whether a token's project list (names or globs over normalized names) includes it."""
    return not token.projects or any(fnmatchcase(project, pattern) for pattern in token.projects)


def can_see(principal: Principal, project: ProjectFacts) -> bool:
    """Visibility alone: restricted projects exist only for admins and role holders."""
    if principal.token is not None and not token_covers(principal.token, project.name):
        return False
    if principal.is_admin or project.visibility == "team":
        return True
    return project.role is not None and principal.user is not None


def decide(
    principal: Principal,
    action: Action,
    project: ProjectFacts,
    creating: CreatePolicy = ANYONE_CREATES,
) -> Decision:
    """ALLOW, DENY, HIDE or NOT_CREATOR for `action` on `project` for `principal`.

    What the caller knows anyway (its token's scope and project list, being anonymous) is
    decided first, and a project it may not see is treated as missing: so an outsider's
    answer is the same for a restricted name as for a free one (issue 10). `creating` is
    the policy for uploads to a free name; a hidden name answers as a free one under it."""
    token = principal.token
    if token is not None and action not in SCOPE_ACTIONS[token.scope]:
        return Decision.DENY
    if token is not None and not token_covers(token, project.name):
        return Decision.HIDE if action is Action.READ else Decision.DENY
    if principal.user is None and action is not Action.READ:
        return Decision.DENY
    if project.exists and not can_see(principal, project):
        if action is Action.UPLOAD and not creating.allows(principal, project.name):
            return Decision.NOT_CREATOR  # what the same upload to a free name gets
        return Decision.HIDE
    if action is Action.READ:
        return Decision.ALLOW if project.exists else Decision.HIDE
    if principal.is_admin:
        return Decision.ALLOW
    if not project.exists:
        # The first uploader of a new name becomes its owner; nothing else creates projects.
        if action is not Action.UPLOAD:
            return Decision.HIDE
        return Decision.ALLOW if creating.allows(principal, project.name) else Decision.NOT_CREATOR
    allowed = ROLE_ACTIONS.get(project.role or "", frozenset())
    return Decision.ALLOW if action in allowed else Decision.DENY
