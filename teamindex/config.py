"""Settings: one frozen dataclass, each option settable by CLI flag or TEAMINDEX_* variable.

Every option is declared once in OPTIONS; the CLI builds its flags from that table and the
environment is read with the same names, so a flag, its variable and its docs never drift.
Precedence: command-line flag, then environment variable, then the default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "TEAMINDEX_"


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_size(value: str) -> int:
    """Parse a byte size such as ``1073741824``, ``512M`` or ``1G``."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _parse_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_networks(value: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks; ValueError names a bad one."""
    items = _parse_list(value)
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


NEW_PROJECT_MODES = ("anyone", "admins")
_PREFIX_CHARS = re.compile(r"[A-Za-z0-9._-]+")


def parse_new_projects(value: str) -> tuple[str, tuple[str, ...]]:
    """`anyone`, `admins` or `prefix:acme-,team-` -> (mode, normalized prefixes). Prefixes
    are compared with normalized names (PEP 503: lower case, runs of `-_.` as one `-`), so
    `prefix:Acme_` and `prefix:acme-` are the same rule."""
    text = value.strip()
    if text.lower() in NEW_PROJECT_MODES:
        return text.lower(), ()
    mode, _, rest = text.partition(":")
    if mode.strip().lower() != "prefix":
        raise ValueError(f"expected anyone, admins or prefix:NAME-,OTHER-, not {value!r}")
    prefixes = _parse_list(rest)
    if not prefixes or not all(_PREFIX_CHARS.fullmatch(p) for p in prefixes):
        raise ValueError(f"prefix: takes comma-separated name prefixes, not {rest!r}")
    return "prefix", tuple(re.sub(r"[-_.]+", "-", p).lower() for p in prefixes)


_ACCEL_PREFIX = re.compile(r"/(?:[A-Za-z0-9_][A-Za-z0-9._-]*/)+")  # no dot segments


def _parse_accel_redirect(value: str) -> str:
    """An internal location prefix such as `/_protected/` (a path, slash at both ends);
    empty turns it off."""
    text = value.strip()
    if text and not _ACCEL_PREFIX.fullmatch(text):
        raise ValueError(f"expected a location like /_protected/, not {value!r}")
    return text


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_PREFIX = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*/)*")  # no dot segments


def parse_storage(value: str) -> str:
    """`local` (or empty: the data dir) or `s3://bucket/prefix`, kept as
    `s3://bucket/prefix/` (the prefix may be empty)."""
    text = value.strip()
    if text in {"", "local"}:
        return ""
    scheme, _, rest = text.partition("://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    if scheme != "s3" or not _BUCKET.fullmatch(bucket) or not _KEY_PREFIX.fullmatch(prefix):
        raise ValueError(f"expected local or s3://bucket/prefix, not {value!r}")
    return f"s3://{bucket}/{prefix}"


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip().lower()
        if text not in choices:
            raise ValueError(f"expected {' or '.join(choices)}, not {value!r}")
        return text

    return parse


def _parse_new_projects(value: str) -> str:
    mode, prefixes = parse_new_projects(value)
    return f"prefix:{','.join(prefixes)}" if prefixes else mode


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> int:
    """Seconds from ``600``, ``90s``, ``10m``, ``12h``, ``7d`` or ``2w``."""
    text = value.strip().lower()
    if text[-1:] in _DURATION_UNITS and text[:-1].isdigit():
        return int(text[:-1]) * _DURATION_UNITS[text[-1]]
    if text.isdigit():
        return int(text)
    raise ValueError(f"not a duration (like 600, 10m, 12h, 7d): {value!r}")


def _parse_date(value: str) -> datetime | None:
    """An ISO date or date-time (UTC unless it names an offset); "" means none."""
    text = value.strip()
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _parse_upstream(value: str) -> str:
    """A PEP 503/691 simple index URL (http or https), kept with its trailing slash."""
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact_url(text)!r}")
    return text if text.endswith("/") else text + "/"


def _parse_database_url(value: str) -> str:
    """Empty (SQLite in the data dir), sqlite:///PATH, or postgresql://... (psycopg 3)."""
    text = value.strip()
    if not text:
        return ""
    scheme = urlsplit(text).scheme
    if scheme == "sqlite":
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise ValueError(f"not sqlite:///PATH: {text!r}")
        return text
    if scheme in {"postgresql", "postgres"}:
        return text
    raise ValueError(f"not a sqlite:/// or postgresql:// URL: {redact_url(text)!r}")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ****, for logs and `teamindex config`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:****@{host}"))


@dataclass(frozen=True)
class Option:
    """One setting: its field name, parser and help text."""

    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one teamindex instance."""

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 4
    workers: int = 0  # 0: one per core (ops/workers.py)
    max_upload_size: int = 1 << 30
    anonymous_read: bool = False
    trusted_proxy: str = ""
    password_hash: str = "scrypt"  # noqa: S105 - a hash method name, not a secret
    auth_cache_seconds: int = 300
    metrics_allow: tuple[str, ...] = ()
    audit_retention_days: int = 365
    throttle_ip_failures: int = 20
    throttle_user_failures: int = 50
    throttle_seconds: int = 300
    readme_external_images: bool = False
    # Who may create a project by uploading to a free name (admins always may). "anyone"
    # keeps the first upload working as every client expects; see README "New projects".
    new_projects: str = "anyone"
    audit_downloads: bool = False
    # The upstream proxy (issue 13); no upstream: the index is exactly what was uploaded.
    upstream: str = field(default="", repr=False)  # may carry user:password: never logged
    # Metadata elsewhere than data_dir/teamindex.sqlite3 (issue 16): may carry a password.
    database_url: str = field(default="", repr=False)
    upstream_ttl: int = 600
    upstream_stale_for: int = 7 * 86400
    upstream_min_age: int = 3 * 86400
    upstream_exclude_newer: datetime | None = None
    upstream_cache_size: int = 20 << 30
    offline: bool = False
    # The front server's internal location for files (nginx X-Accel-Redirect), e.g.
    # "/_protected/"; empty: teamindex sends the bytes itself. README: "behind TLS".
    accel_redirect: str = ""
    # Trusted publishing (issue 15); no audience: derived from the instance (see README).
    oidc_audience: str = ""
    oidc_ca_file: Path | None = None
    oidc_jwks_file: Path | None = None
    # Where package files and docs live (issue 16): "" is the data dir, else s3://bucket/prefix/.
    storage: str = ""
    s3_downloads: str = "redirect"
    s3_url_expiry: int = 300
    s3_endpoint_url: str = ""  # empty: boto3's AWS_ENDPOINT_URL (or AWS itself)
    s3_region: str = ""  # empty: boto3's AWS_DEFAULT_REGION
    s3_access_key_id: str = ""  # empty: boto3's AWS_ACCESS_KEY_ID, profile, instance role
    s3_secret_access_key: str = field(default="", repr=False)
    # Where each value came from ("default", "env TEAMINDEX_PORT", "flag --port").
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def waitress_options(self, form_overhead: int) -> dict[str, Any]:
        """Keyword arguments for waitress.create_server: the one place the server is tuned."""
        proxy = (
            {
                "trusted_proxy": self.trusted_proxy,
                "trusted_proxy_count": 1,
                "trusted_proxy_headers": {
                    "x-forwarded-for",
                    "x-forwarded-proto",
                    "x-forwarded-host",
                },
            }
            if self.trusted_proxy
            else {}
        )
        return {
            "host": self.host,
            "port": self.port,
            "threads": self.threads,
            "max_request_body_size": self.max_upload_size + form_overhead,
            "ident": "teamindex",
            # waitress reads request bodies 8 KiB per loop turn by default; uploads are
            # large, and 256 KiB reads took a 200 MiB upload from ~160 to ~240 MB/s here.
            "recv_bytes": 256 << 10,
            "clear_untrusted_proxy_headers": True,
            **proxy,
        }

    @property
    def db_path(self) -> Path:
        return self.data_dir / "teamindex.sqlite3"

    @property
    def database(self) -> Path | str:
        """What Database() opens: the SQLite file (a Path) or a postgresql:// URL."""
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))  # ////: absolute
        return self.database_url or self.db_path

    @property
    def packages_dir(self) -> Path:
        return self.data_dir / "packages"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def s3_bucket(self) -> str:
        return self.storage.removeprefix("s3://").partition("/")[0]

    @property
    def s3_prefix(self) -> str:
        return self.storage.removeprefix("s3://").partition("/")[2]

    @property
    def upstream_dir(self) -> Path:
        return self.data_dir / "upstream"


OPTIONS: tuple[Option, ...] = (
    Option("data_dir", Path, "data directory: SQLite database and package files"),
    Option("host", str, "address to listen on"),
    Option("port", int, "TCP port to listen on"),
    Option("threads", int, "waitress worker threads"),
    Option(
        "workers",
        int,
        "server processes sharing the port (0, the default: one per core; 1: one process)",
    ),
    Option("max_upload_size", _parse_size, "largest accepted distribution file (e.g. 1G, 200M)"),
    Option("anonymous_read", _parse_bool, "let unauthenticated clients read the index"),
    Option(
        "trusted_proxy",
        str,
        "address of the reverse proxy whose X-Forwarded-For/-Proto/-Host are believed "
        "(e.g. 127.0.0.1); from anyone else those headers are dropped",
    ),
    Option(
        "password_hash",
        str,
        "werkzeug password hash method for new passwords (e.g. scrypt, pbkdf2:sha256:600000)",
    ),
    Option(
        "auth_cache_seconds",
        int,
        "how long a verified password or login is remembered in memory (0 disables the cache)",
    ),
    Option(
        "metrics_allow",
        _parse_networks,
        "comma-separated addresses/CIDRs that may read /metrics without logging in as admin",
    ),
    Option("audit_retention_days", int, "days of audit log kept (pruned at start-up)"),
    Option(
        "throttle_ip_failures",
        int,
        "failed logins from one address (IPv6: one /64) within throttle-seconds that block "
        "new logins from it (429)",
    ),
    Option(
        "throttle_user_failures",
        int,
        "failed passwords for one user name (any spelling) within throttle-seconds that block "
        "it from addresses it has not logged in from",
    ),
    Option("throttle_seconds", int, "the throttle's counting window and cooling period"),
    Option(
        "readme_external_images",
        _parse_bool,
        "load README images from other https hosts (badges); off: they become links, so "
        "no outside host learns who reads which project",
    ),
    Option(
        "new_projects",
        _parse_new_projects,
        "who may create a project by uploading to a free name: anyone, admins, or "
        "prefix:acme-,team- (names starting so; admins always may, and "
        "`teamindex project create NAME --owner USER` reserves any name)",
    ),
    Option(
        "audit_downloads",
        _parse_bool,
        "record every download in the audit log with user, token and address (off: only "
        "counts per file per day; on: who fetched what, which is personal data)",
    ),
    Option(
        "upstream",
        _parse_upstream,
        "a PEP 503/691 simple index to proxy for names that are not private (e.g. PyPI's "
        "simple index URL); credentials as user:password@ in the URL; none: no proxy",
    ),
    Option(
        "database_url",
        _parse_database_url,
        "where the metadata lives: empty for SQLite in the data dir (or sqlite:///PATH), or "
        "postgresql://user:password@host/db (psycopg 3; extra `teamindex[postgresql]`)",
    ),
    Option("upstream_ttl", parse_duration, "how long an upstream page is used unrevalidated"),
    Option(
        "upstream_stale_for",
        parse_duration,
        "how long the last good copy of an upstream page is served while upstream fails",
    ),
    Option(
        "upstream_min_age",
        parse_duration,
        "upstream files younger than this (by upstream upload-time) are hidden and refused",
    ),
    Option(
        "upstream_exclude_newer",
        _parse_date,
        "hide upstream files uploaded after this date (reproducible builds)",
    ),
    Option(
        "upstream_cache_size",
        _parse_size,
        "bytes of cached upstream files kept; least recently downloaded go first",
    ),
    Option("offline", _parse_bool, "never contact upstream: serve only what is cached"),
    Option(
        "accel_redirect",
        _parse_accel_redirect,
        "let the front server send files: after the usual checks a download is answered "
        "with `X-Accel-Redirect: PREFIX<project>/<file>` and no body (nginx; e.g. "
        "/_protected/, see `teamindex nginx-config`)",
    ),
    Option(
        "oidc_audience",
        str,
        "the audience CI jobs ask their OIDC token for (trusted publishing); default: "
        "teamindex- and 16 hex digits derived from this instance's secret key",
    ),
    Option(
        "oidc_ca_file",
        Path,
        "PEM file of CAs trusted for OIDC issuers' https (e.g. a self-managed GitLab with an "
        "internal CA); default: the system's",
    ),
    Option(
        "oidc_jwks_file",
        Path,
        "JSON file {issuer URL: JWKS} with issuers' signing keys, so no issuer is contacted "
        "(air-gapped installs; update it when an issuer rotates keys)",
    ),
    Option(
        "storage",
        parse_storage,
        "where package files and docs live: local (the data dir, the default) or "
        "s3://bucket/prefix (an S3-compatible object store; the database stays as configured)",
    ),
    Option(
        "s3_downloads",
        _parse_choice("redirect", "stream"),
        "with S3 storage, how a download is answered after the permission check: redirect "
        "(a short-lived presigned URL the client fetches from the store) or stream (the bytes "
        "pass through teamindex; the store need not be reachable by clients)",
    ),
    Option(
        "s3_url_expiry",
        parse_duration,
        "how long a presigned download URL stays valid (e.g. 300, 5m)",
    ),
    Option(
        "s3_endpoint_url",
        str,
        "the S3 endpoint (e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO); default: "
        "boto3's AWS_ENDPOINT_URL",
    ),
    Option("s3_region", str, "the S3 region; default: boto3's AWS_DEFAULT_REGION"),
    Option(
        "s3_access_key_id",
        str,
        "the S3 access key; default: boto3's AWS_ACCESS_KEY_ID, profile or instance role",
    ),
    Option(
        "s3_secret_access_key",
        str,
        "the S3 secret key (prefer the environment variable); default: boto3's "
        "AWS_SECRET_ACCESS_KEY",
    ),
)


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from explicit flag values (None = not given), then env, then defaults."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {f.name: "default" for f in fields(Settings) if f.name != "sources"}
    for option in OPTIONS:
        given = flags.get(option.name)
        if given is not None:
            values[option.name] = given
            sources[option.name] = f"flag {option.flag}"
        elif option.env in environ:
            try:
                values[option.name] = option.parse(environ[option.env])
            except ValueError as exc:
                raise ValueError(f"{option.env}: {exc}") from exc
            sources[option.name] = f"env {option.env}"
    settings = replace(Settings(**values), sources=sources)
    check_combination(settings)
    return settings


def check_combination(settings: Settings) -> None:
    """ValueError for settings that contradict each other, in one line."""
    if settings.storage and settings.accel_redirect:
        raise ValueError(
            "--accel-redirect needs local storage (the front server reads the data dir); "
            "with --storage s3://... downloads redirect to or stream from the bucket"
        )
    if settings.storage and settings.max_upload_size > 5 << 30:
        raise ValueError(
            "--max-upload-size above 5G needs local storage (S3 copies one object in one "
            "request of at most 5 GiB)"
        )
