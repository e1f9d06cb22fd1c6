"""Records passed between the database layer and everything else (frozen, no sqlite3.Row)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    is_admin: bool


@dataclass(frozen=True)
class Project:
    id: int
    name: str  # normalized
    display_name: str
    serial: int
    visibility: str = "team"  # "team": every user may read; "restricted": only users with a role


@dataclass(frozen=True)
class FileRecord:
    """One distribution file as the simple API and downloads need it."""

    id: int
    project: str  # normalized project name
    version: str
    filename: str
    packagetype: str
    python_version: str
    requires_python: str
    size: int
    sha256: str
    blake2_256: str
    md5: str
    metadata_sha256: str | None
    upload_time: str
    yanked: bool
    yanked_reason: str


@dataclass(frozen=True)
class NewFile:
    """Everything an upload or import records about a file that is not yet in the index."""

    project: str
    display_name: str
    version: str
    canonical_version: str
    summary: str
    metadata_json: str
    filename: str
    packagetype: str
    python_version: str
    requires_python: str
    size: int
    sha256: str
    blake2_256: str
    md5: str
    metadata_sha256: str | None
    upload_time: str
    uploader_id: int | None


@dataclass(frozen=True)
class Token:
    """An API token's rights (its secret is never stored, only a digest)."""

    id: int
    user_id: int
    scope: str  # "read" or "upload"
    projects: tuple[str, ...]  # normalized names or globs; empty = every project
    allow_ips: tuple[str, ...]  # CIDRs; empty = no extra restriction
    note: str
    created: str
    expires: str | None
    revoked: str | None
    last_used: str | None = None
    last_ip: str | None = None
    user_name: str = ""


@dataclass(frozen=True)
class AllowEntry:
    id: int
    cidr: str
    note: str
    user: str | None  # None = global list


@dataclass(frozen=True)
class AuditEvent:
    time: str
    ip: str
    user: str
    token_id: int | None
    action: str
    project: str
    filename: str
    outcome: str
    detail: str
    id: int | None = None  # the row id (ids grow with time): `audit --before ID` pages on it


# -- web UI and docs --


@dataclass(frozen=True)
class ReleaseInfo:
    """One release as the web pages list it (no metadata: that can be a 600 KB README)."""

    id: int
    project: str  # normalized
    display_name: str
    visibility: str
    role: str | None  # the viewer's role in the project
    version: str
    canonical_version: str
    summary: str
    yanked: bool
    yanked_reason: str
    created: str
    updated: str  # newest upload time among its files


@dataclass(frozen=True)
class DocsBuild:
    """The current documentation build of one release."""

    project: str
    version: str
    canonical_version: str
    build: str  # directory name under data/docs/<project>/<canonical_version>/
    files: int
    size: int
    uploaded: str
    uploader: str


@dataclass(frozen=True)
class LoginFacts:
    """Everything a login needs, read in one query: the user (or the token and its owner)
    the global and per-user IP allowlists, and the auth serial they are current for."""

    user: User | None
    token: Token | None
    global_allowlist: tuple[str, ...]
    user_allowlist: tuple[str, ...]
    auth_serial: int


# -- login throttle --


@dataclass(frozen=True)
class ThrottleState:
    """What the throttle knows about one login attempt, read in one statement: when the
    address's and the user's blocks end (Unix seconds, 0: none) and when the user last
    logged in from this address (None: never, or pruned)."""

    address_blocked_until: float
    user_blocked_until: float
    user_seen_here: float | None


@dataclass(frozen=True)
class ThrottleEntry:
    """One throttle key with failures in its window or a block (for `throttle list`)."""

    kind: str  # "address" (IPv4 address or IPv6 /64) or "user" (canonical user name)
    subject: str
    failures: int
    max_failures: int
    window_start: float
    blocked_until: float  # 0 or in the past: not blocked


@dataclass(frozen=True)
class UpstreamRule:
    """An admin's origin control for one name (`project set NAME --upstream --min-age`)."""

    name: str  # normalized
    mode: str | None  # "allow" | "deny" | None (the default)
    min_age: int | None  # seconds; None: the index default


@dataclass(frozen=True)
class UpstreamRules:
    """Every origin control, tagged with the upstream serial it was read at."""

    serial: int
    protected: tuple[str, ...]
    projects: tuple[UpstreamRule, ...]


@dataclass(frozen=True)
class Publisher:
    """A CI identity allowed to trade its OIDC token for a short-lived upload token."""

    id: int
    project: str  # normalized name
    pending: bool  # registered before the project existed (its first upload creates it)
    kind: str  # "github", "gitlab" or "oidc"
    issuer: str
    claims: Mapping[str, str]  # claim name -> the value the token must carry
    user_id: int  # whose rights minted tokens narrow
    user_name: str
    created: str
    project_id: int | None = None
