"""The Caddy configuration in front of teamindex: `teamindex caddy-config` prints it.

One function of the settings, like nginx's (front.py), so the README's Caddyfile, the one
tests/e2e/test_front_servers.py runs and the one an admin installs are the same text. Caddy
2.5+ can act on teamindex's `X-Accel-Redirect` answer: `reverse_proxy`'s `handle_response`
matches the header and runs `file_server` on the file it names. Unlike nginx:

- No kept decision: core Caddy has no response cache (Debian's build has no cache module),
  so every download is one cheap teamindex request (the empty X-Accel answer, after the
  usual checks) and Caddy sends the bytes. Conditional requests need nothing special:
  teamindex answers 304s and 416s itself and only a 200 or 206 comes back as X-Accel.
- Go's file server makes its own ETag, Last-Modified and (for unknown extensions) no
  Content-Type, and would re-evaluate conditional requests against those: the config puts
  teamindex's headers back (deferred `header`), keeps the Range only when teamindex
  answered a 206 (X-Teamindex-Ranges) and drops the conditions teamindex has decided.
- No internal location to protect: `file_server` only runs inside `handle_response`, so a
  request for /_protected/... is proxied to teamindex as any path is (404).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .front import (
    DEFAULT_ACCEL,
    FILE_CACHE_CONTROL,
    FILE_HEADER,
    FORM_OVERHEAD_MB,
    FRONT_CHECK_PREFIX,
    RANGES_HEADER,
    FrontOptions,
    upstream_address,
)

# The headers of a file answer that are teamindex's own (api/files.py), not Go's.
_OWN_HEADERS = ("ETag", "Last-Modified", "Content-Type")
_STATIC_HEADERS = (("Cache-Control", FILE_CACHE_CONTROL), ("X-Content-Type-Options", "nosniff"))
# What teamindex has decided before it names the file: Go's file server must not decide
# again against its own ETag and the file's mtime.
_DECIDED = ("If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")
# Caddyfile tokens are split on whitespace; `{...}` is a placeholder even inside quotes.
_UNSAFE_IN_PATH = set('{}"\\\n\r\t')


def caddy_config(settings: Settings, options: FrontOptions) -> str:
    """The text of a Caddyfile site block (Debian: import it from /etc/caddy/Caddyfile).

    Raises ValueError for a --listen or a packages dir a Caddyfile cannot say."""
    tls = options.tls_cert is not None and options.tls_key is not None
    bind, port = _split_listen(options.listen, "443" if tls else "80")
    accel = settings.accel_redirect or DEFAULT_ACCEL
    packages = _quoted("the packages dir", settings.packages_dir.resolve())
    scheme = "https" if tls else "http"
    names = [n for n in options.server_name.split() if n != "_"] or [""]
    sites = ", ".join(f"{scheme}://{name}:{port}" for name in names)
    body_mib = (settings.max_upload_size >> 20) + FORM_OVERHEAD_MB
    tls_lines = (
        f"\ttls {_quoted('--tls-cert', options.tls_cert)} {_quoted('--tls-key', options.tls_key)}\n"
        if tls
        else "\t# plain HTTP: passwords cross the network in clear. Use --tls-cert/--tls-key.\n"
    )
    bind_line = f"\tbind {bind}\n" if bind else ""
    return f"""\
# teamindex behind Caddy, printed by `teamindex caddy-config` for data dir
# {settings.data_dir.resolve()}. A site block: import it from the Caddyfile (Caddy 2.5+).
# teamindex must run with --accel-redirect {accel} --trusted-proxy 127.0.0.1: Caddy
# sets X-Forwarded-For/-Proto/-Host (ignoring the client's own), which teamindex believes
# only from the --trusted-proxy address.
{sites} {{
{bind_line}{tls_lines}\trequest_body {{
\t\tmax_size {body_mib}MiB # --max-upload-size plus form overhead
\t}}
\t# nginx-config's auth_request route: not for outside (no kept decisions here).
\trespond {FRONT_CHECK_PREFIX}/* 404

\t# Uploads stream through (Caddy buffers neither bodies nor answers by default).
\treverse_proxy {upstream_address(settings)} {{
\t\t# teamindex checked the download and said 206: Caddy sends that Range of the file.
\t\t@teamindex_range header {RANGES_HEADER} bytes
\t\thandle_response @teamindex_range {{
{_file_answer_lines(packages, ranged=True)}\t\t}}
\t\t# teamindex checked the download and said 200: Caddy sends the whole file.
\t\t@teamindex_file header X-Accel-Redirect *
\t\thandle_response @teamindex_file {{
{_file_answer_lines(packages, ranged=False)}\t\t}}
\t}}
}}
"""


def _file_answer_lines(packages: str, *, ranged: bool) -> str:
    """file_server on the file teamindex named, with teamindex's headers (api/files.py)."""
    dropped = _DECIDED if ranged else ("Range", *_DECIDED)
    # Go names the upstream's headers canonically (Etag): so must the placeholder.
    own = "".join(f"\t\t\t\t{name} {{rp.header.{name.title()}}}\n" for name in _OWN_HEADERS)
    static = "".join(f'\t\t\t\t{name} "{value}"\n' for name, value in _STATIC_HEADERS)
    removed = "".join(f"\t\t\trequest_header -{name}\n" for name in dropped)
    return (
        f"\t\t\troot * {packages}\n"
        f"\t\t\trewrite * /{{rp.header.{FILE_HEADER}}} # X-Accel-Redirect's, unescaped\n"
        f"{removed}"
        "\t\t\theader {\n"
        f"{own}{static}"
        "\t\t\t\tdefer # over file_server's own ETag, Last-Modified and type\n"
        "\t\t\t}\n"
        "\t\t\tfile_server\n"
    )


def _quoted(what: str, path: Path | None) -> str:
    """`path` as one Caddyfile token, or ValueError if Caddy would read it otherwise."""
    text = str(path)
    if _UNSAFE_IN_PATH & set(text):
        raise ValueError(f"{what} {text!r} holds a character Caddy cannot read")
    return f'"{text}"'


def _split_listen(listen: str, default_port: str) -> tuple[str, str]:
    """--listen as nginx takes it (ADDR:PORT, PORT or ADDR; [v6]:PORT) -> (bind, port)."""
    if not listen:
        return "", default_port
    if listen.isdigit():
        return "", _port(listen)
    if listen.startswith("["):
        host, _bracket, rest = listen[1:].partition("]")
        return host, _port(rest.removeprefix(":")) if rest else default_port
    host, colon, port = listen.rpartition(":")
    if not colon or ":" in host:  # a name or IPv4 address alone, or a bare IPv6 address
        return listen, default_port
    return host, _port(port)


def _port(text: str) -> str:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"--listen: {text!r} is not a port")
    return text
