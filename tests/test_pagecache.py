"""teamindex.api.pagecache: rendered pages per serial, with a strong ETag and a gzip form."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from teamindex.api.pagecache import GZIP_MIN_BYTES, CachedPage, PageCache


class Builder:
    def __init__(self, body: bytes = b"page") -> None:
        self.body = body
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.body


@pytest.mark.parametrize(
    ("size", "gzipped"),
    [(0, False), (GZIP_MIN_BYTES - 1, False), (GZIP_MIN_BYTES, True), (100_000, True)],
)
def test_cached_page_build(size, gzipped):
    body = b"x" * size
    page = CachedPage.build(body)
    assert page.body == body
    assert page.etag == hashlib.sha256(body).hexdigest()[:32]
    assert '"' not in page.etag
    assert (page.gzipped is not None) is gzipped
    if page.gzipped is not None:
        assert gzip.decompress(page.gzipped) == body
        assert len(page.gzipped) < len(body)


def test_gzip_is_deterministic():
    body = b"<a>file</a>\n" * 500
    assert CachedPage.build(body).gzipped == CachedPage.build(body).gzipped


def test_etag_differs_with_body():
    assert CachedPage.build(b"a").etag != CachedPage.build(b"b").etag


def test_hit_for_same_serial_does_not_build():
    cache, build = PageCache(), Builder()
    first = cache.get_or_build(("project", "foo"), 5, build)
    second = cache.get_or_build(("project", "foo"), 5, build)
    assert second is first
    assert (build.calls, cache.builds) == (1, 1)


def test_new_serial_rebuilds():
    cache = PageCache()
    cache.get_or_build(("project", "foo"), 1, Builder(b"old"))
    page = cache.get_or_build(("project", "foo"), 2, Builder(b"new"))
    assert page.body == b"new"
    assert cache.builds == 2
    # ...and the new serial is now the cached one.
    assert cache.get_or_build(("project", "foo"), 2, Builder(b"other")).body == b"new"
    assert cache.builds == 2


def test_keys_are_independent():
    cache = PageCache()
    html = cache.get_or_build(("project", "foo", "text/html"), 1, Builder(b"html"))
    json_ = cache.get_or_build(("project", "foo", "json"), 1, Builder(b"json"))
    assert (html.body, json_.body) == (b"html", b"json")
    assert cache.builds == 2


def test_lru_evicts_least_recently_used():
    cache = PageCache(max_entries=2)
    cache.get_or_build(("a",), 1, Builder(b"a"))
    cache.get_or_build(("b",), 1, Builder(b"b"))
    cache.get_or_build(("a",), 1, Builder(b"a2"))  # touch a: b is now the oldest
    cache.get_or_build(("c",), 1, Builder(b"c"))
    assert cache.builds == 3
    assert cache.get_or_build(("a",), 1, Builder(b"a3")).body == b"a"
    assert cache.get_or_build(("b",), 1, Builder(b"b2")).body == b"b2"  # evicted, rebuilt
    assert cache.builds == 4


def test_clear_forgets_pages():
    cache = PageCache()
    cache.get_or_build(("a",), 1, Builder(b"a"))
    cache.clear()
    assert cache.get_or_build(("a",), 1, Builder(b"fresh")).body == b"fresh"
    assert cache.builds == 2


def test_failed_build_caches_nothing():
    cache = PageCache()

    def broken() -> bytes:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        cache.get_or_build(("a",), 1, broken)
    assert cache.builds == 0
    assert cache.get_or_build(("a",), 1, Builder(b"ok")).body == b"ok"
