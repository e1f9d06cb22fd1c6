"""The nginx configuration in front of teamindex: `teamindex nginx-config` prints it.

One function of the settings, so the config the README shows, the one the end-to-end tests
run and the one an admin installs are the same text. What it sets up, and why:

- `/files/` asks teamindex first (`auth_request` to /_accel/files/..., api/files.py
  front_check) and keeps a yes for `cache_seconds` per Authorization header, client address
  and URI; nginx then sends the file from packages/ itself with teamindex's ETag and
  Last-Modified. Repeat downloads, most of an installer fleet's traffic, cost no Python
  request. A revoked token or changed password still works for at most that window.
- Anything but a yes, and every conditional request (nginx's own 304 logic would compare
  its own ETag), goes to teamindex's /files/, which answers as without a front; its 200s
  and 206s come back as `X-Accel-Redirect` to the internal location, so nginx sends those
  bytes too.
- The internal location is `internal;`: no outside request reaches it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings

# The route nginx's auth_request asks (api/files.py), and the header naming the file.
FRONT_CHECK_PREFIX = "/_accel"
FILE_HEADER = "X-Teamindex-File"
RANGES_HEADER = "X-Teamindex-Ranges"  # "bytes" when teamindex answered a 206 (X-Accel)
DEFAULT_ACCEL = "/_protected/"
DEFAULT_CACHE_SECONDS = 5
FORM_OVERHEAD_MB = 64  # multipart framing over the largest file (app.FORM_OVERHEAD is 32 MiB)
_CONDITIONAL = (
    "range",  # its 416 and Accept-Ranges are teamindex's (rare: resumes, metadata by range)
    "if_none_match",
    "if_modified_since",
    "if_range",
    "if_match",
    "if_unmodified_since",
)
_CONDITIONAL_HEADERS = "".join(f"$http_{name}" for name in _CONDITIONAL)
FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"


@dataclass(frozen=True)
class FrontOptions:
    """What `nginx-config` takes beyond the serve settings."""

    listen: str = ""
    server_name: str = "_"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    cache_dir: Path = Path("/run/nginx-teamindex")
    cache_seconds: int = DEFAULT_CACHE_SECONDS


def upstream_address(settings: Settings) -> str:
    """Where nginx reaches teamindex: its --host and --port (a wildcard host: loopback)."""
    host = settings.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{settings.port}"
    if address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    elif address.version == 6:
        return f"[{host}]:{settings.port}"
    return f"{host}:{settings.port}"


def warnings(settings: Settings, front: str = "nginx") -> list[str]:
    """Serve settings the printed config for `front` (nginx, Caddy) relies on but that are
    not set here."""
    found = []
    if not settings.accel_redirect:
        kept = " and nginx caches nothing" if front == "nginx" else ""
        found.append(
            f"serve needs --accel-redirect {DEFAULT_ACCEL} (TEAMINDEX_ACCEL_REDIRECT): "
            f"without it teamindex sends every file itself{kept}"
        )
    if not settings.trusted_proxy:
        found.append(
            f"serve needs --trusted-proxy with {front}'s address (TEAMINDEX_TRUSTED_PROXY="
            f"127.0.0.1): otherwise allowlists, throttling and the audit see {front}, not clients"
        )
    if settings.audit_downloads and front == "nginx":
        found.append(
            "--audit-downloads is on: nginx keeps no decision, so every download is recorded"
        )
    return found


def nginx_config(settings: Settings, options: FrontOptions) -> str:
    """The text for a file included in nginx's http {} block (Debian: conf.d/)."""
    tls = options.tls_cert is not None and options.tls_key is not None
    listen = options.listen or ("443" if tls else "80")
    accel = settings.accel_redirect or DEFAULT_ACCEL
    packages = settings.packages_dir.resolve()
    seconds = 0 if settings.audit_downloads else max(options.cache_seconds, 0)
    body_mb = (settings.max_upload_size >> 20) + FORM_OVERHEAD_MB
    tls_lines = (
        f"    ssl_certificate     {options.tls_cert};\n    ssl_certificate_key {options.tls_key};\n"
        if tls
        else "    # plain HTTP: passwords cross the network in clear. Use --tls-cert/--tls-key.\n"
    )
    cache_lines = (
        f"        proxy_cache teamindex_auth;\n"
        f'        proxy_cache_key "$remote_addr $http_authorization $request_uri";\n'
        f"        proxy_cache_valid 204 {seconds}s;   # a revoked credential: at most this long\n"
        f"        proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;\n"
        if seconds
        else "        # no cache: every download asks teamindex (--audit-downloads, or 0 s)\n"
    )
    cache_path = (
        f"# The decisions nginx keeps: each key holds the Authorization header, so this dir is\n"
        f"# as secret as the credentials (nginx makes it 0700); on tmpfs it never hits disk.\n"
        f"proxy_cache_path {options.cache_dir} levels=1:2 keys_zone=teamindex_auth:10m\n"
        f"                 max_size=64m inactive=60s use_temp_path=off;\n"
        if seconds
        else ""
    )
    return f"""\
# teamindex behind nginx, printed by `teamindex nginx-config` for data dir
# {settings.data_dir.resolve()}. Include it inside http {{}} (Debian: /etc/nginx/conf.d/).
# teamindex must run with --accel-redirect {accel} --trusted-proxy 127.0.0.1.

# ---- http {{}} level ----
upstream teamindex {{
    server {upstream_address(settings)};
    keepalive 32;
}}
{cache_path}# A conditional or Range GET goes to teamindex, which answers 304s and 416s itself.
map "{_CONDITIONAL_HEADERS}" $teamindex_conditional {{
    "" 0;
    default 1;
}}

# ---- the server ----
server {{
    listen {listen}{" ssl" if tls else ""};
    server_name {options.server_name};
{tls_lines}    client_max_body_size {body_mb}m;   # --max-upload-size plus form overhead
    proxy_request_buffering off;         # stream uploads through
    proxy_read_timeout 300s;
    # teamindex sees one peer, nginx: slow clients are nginx's to bound.
    client_header_timeout 15s;
    client_body_timeout 30s;
    send_timeout 30s;
    keepalive_timeout 30s;
    sendfile on;
    tcp_nopush on;
    proxy_http_version 1.1;
{_proxy_headers("    ")}
    location / {{
        proxy_pass http://teamindex;
    }}

    # Downloads: teamindex decides, nginx sends (see `teamindex nginx-config --help`).
    location /files/ {{
        error_page 401 403 404 418 = @teamindex;   # teamindex's own answer
        if ($teamindex_conditional) {{ return 418; }}
        auth_request /_teamindex_check;
        auth_request_set $teamindex_file $upstream_http_{_var(FILE_HEADER)};
        auth_request_set $teamindex_etag $upstream_http_etag;
        auth_request_set $teamindex_modified $upstream_http_last_modified;
        root {packages};
        try_files /$teamindex_file =404;
{_file_answer_lines()}    }}

    location = /_teamindex_check {{
        internal;
        proxy_pass http://teamindex{FRONT_CHECK_PREFIX}$request_uri;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        # A location with its own proxy_set_header inherits none: the client's
        # X-Forwarded-For would reach teamindex, which believes nginx.
{_proxy_headers("        ")}{cache_lines}    }}

    location @teamindex {{
        proxy_pass http://teamindex;
    }}

    # teamindex's X-Accel-Redirect answers land here; `internal`: unreachable from outside.
    location {accel} {{
        internal;
        alias {packages}/;
        add_header ETag $upstream_http_etag;
        add_header Last-Modified $upstream_http_last_modified;
{_file_answer_lines(etag=False)}    }}

    location {FRONT_CHECK_PREFIX}/ {{
        return 404;
    }}
}}
"""


def _proxy_headers(indent: str) -> str:
    """Keepalive to teamindex, and the client as nginx saw it (never as the client says)."""
    return "".join(
        f"{indent}proxy_set_header {name} {value};\n"
        for name, value in (
            ("Connection", '""'),
            ("Host", "$host"),
            ("X-Forwarded-For", "$remote_addr"),
            ("X-Forwarded-Proto", "$scheme"),
            ("X-Forwarded-Host", "$host"),
        )
    )


def _var(header: str) -> str:
    return header.lower().replace("-", "_")


def _file_answer_lines(*, etag: bool = True) -> str:
    """The headers and types of a file answer, as teamindex's own (api/files.py)."""
    own = (
        "        add_header ETag $teamindex_etag;\n"
        "        add_header Last-Modified $teamindex_modified;\n"
        if etag  # /files/: no Range comes here; in /_protected/ teamindex says if it is a 206
        else f"        add_header Accept-Ranges $upstream_http_{_var(RANGES_HEADER)};\n"
    )
    return (
        f"{own}"
        "        etag off;                  # nginx's own differs: teamindex's is the sha256\n"
        "        if_modified_since off;\n"
        "        max_ranges 1;                 # several ranges: the whole file, as teamindex\n"
        f'        add_header Cache-Control "{FILE_CACHE_CONTROL}";\n'
        "        add_header X-Content-Type-Options nosniff;\n"
        "        types { text/plain metadata; }\n"
        "        default_type application/octet-stream;\n"
        "        charset utf-8;\n"
        "        charset_types text/plain;\n"
    )
