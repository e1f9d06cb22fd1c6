"""HTTP to the upstream index: urllib3's connection pool, bounded timeouts, streamed bodies.

Credentials given in the upstream URL (user:password@) are taken out of it and sent as
Basic auth only to the index's own origin (scheme, host, port): files often live on another
host, which must not see them. urllib3 drops Authorization on a redirect to another host.
Nothing here logs a URL with credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

if TYPE_CHECKING:
    import urllib3

# urllib3 is imported where it is used: without --upstream no client is ever made, and its
# ~20 ms of imports would only delay every cold start (issue 14).

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# Every wait is bounded: connecting, and each read of the socket (not the whole body: a
# 500 MB wheel may take minutes, but it must keep moving).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_REDIRECTS = 3
MAX_PAGE_BYTES = 64 << 20  # the largest PyPI project pages are ~10 MB of JSON
CHUNK = 256 << 10


class UpstreamFailed(Exception):
    """Upstream could not answer: `status` is what we answer with (502 or 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PageReply:
    status: int  # 200, 304 or 404
    body: bytes = b""
    etag: str | None = None
    url: str = ""  # the final URL (relative file URLs resolve against it)


class UpstreamClient:
    def __init__(self, base_url: str, pool_size: int = 8) -> None:
        import urllib3

        parts = urlsplit(base_url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        self.base_url = urlunsplit(parts._replace(netloc=netloc))
        self._origin = (parts.scheme, netloc)
        self._auth = (
            urllib3.make_headers(basic_auth=f"{parts.username or ''}:{parts.password or ''}")
            if parts.username or parts.password
            else {}
        )
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            block=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=urllib3.Retry(total=MAX_REDIRECTS, connect=1, read=0, redirect=MAX_REDIRECTS),
            headers={"User-Agent": "teamindex-proxy"},
        )

    def page_url(self, name: str) -> str:
        return urljoin(self.base_url, f"{name}/")

    def _headers(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        parts = urlsplit(url)
        same = (parts.scheme, parts.netloc) == self._origin
        return {**(self._auth if same else {}), **extra}

    def get_page(self, name: str, etag: str | None) -> PageReply:
        """GET the PEP 691 JSON page of `name`, revalidating with If-None-Match."""
        import urllib3

        url = self.page_url(name)
        headers = {"Accept": JSON_TYPE}
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = self._pool.request(
                "GET", url, headers=self._headers(url, headers), preload_content=False
            )
        except urllib3.exceptions.MaxRetryError as exc:
            raise _failure(exc.reason or exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _failure(exc) from None
        reusable = response.status == 304  # no body: the connection may serve the next one
        try:
            if response.status in (304, 404, 410):
                return PageReply(404 if response.status == 410 else response.status, etag=etag)
            if response.status != 200:
                raise UpstreamFailed(502, f"upstream answered {response.status} for {name}")
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if kind != JSON_TYPE:
                raise UpstreamFailed(502, f"upstream sent {kind or 'no type'}, not PEP 691 JSON")
            body = _read_bounded(response, MAX_PAGE_BYTES)
            reusable = True
            # urllib3 may give only the path (or a redirect's target): resolve it.
            final = urljoin(url, response.geturl() or url)
            return PageReply(200, body, response.headers.get("ETag"), final)
        except urllib3.exceptions.HTTPError as exc:
            raise _failure(exc) from None
        finally:
            if not reusable:
                # A body left unread (an error page, a 404) would be read as the next
                # request's answer on this kept-alive connection: close it instead.
                response.close()
            response.release_conn()

    def get_small(self, url: str, limit: int) -> bytes:
        """A small file (a .metadata) in full, at most `limit` bytes."""
        import urllib3

        response = self.open(url)
        try:
            return _read_bounded(response, limit)
        except urllib3.exceptions.HTTPError as exc:
            response.close()  # possibly half read: never back into the pool
            raise _failure(exc) from None
        except UpstreamFailed:
            response.close()
            raise
        finally:
            response.release_conn()

    def open(self, url: str) -> urllib3.BaseHTTPResponse:
        """Start streaming a file; the caller reads it with `chunks` and releases it."""
        import urllib3

        try:
            response = self._pool.request(
                "GET",
                url,
                headers=self._headers(url, {"Accept-Encoding": "identity"}),
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.MaxRetryError as exc:
            raise _failure(exc.reason or exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _failure(exc) from None
        if response.status != 200:
            response.close()  # its body unread: never back into the pool (see get_page)
            response.release_conn()
            raise UpstreamFailed(502, f"upstream answered {response.status} for a file")
        return response

    def close(self) -> None:
        self._pool.clear()


def chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body in pieces; a stalled or broken transfer raises UpstreamFailed."""
    import urllib3

    try:
        yield from response.stream(CHUNK, decode_content=False)
    except urllib3.exceptions.HTTPError as exc:
        raise _failure(exc) from None


def _read_bounded(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    parts, size = [], 0
    for part in response.stream(CHUNK):
        size += len(part)
        if size > limit:
            raise UpstreamFailed(502, f"upstream answer larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def _failure(exc: BaseException) -> UpstreamFailed:
    import urllib3

    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return UpstreamFailed(504, "upstream did not answer in time")
    # The exception text may hold the URL; name only its kind.
    return UpstreamFailed(502, f"upstream unreachable ({type(exc).__name__})")
