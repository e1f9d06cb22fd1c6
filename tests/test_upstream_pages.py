"""upstream/pages.PageCache on its own, against the loopback fake upstream (upstream_support):
its memory stays within a budget, and a stale copy during an outage does not make every
request wait for upstream again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from upstream_support import FakeUpstream

from teamindex.upstream.client import UpstreamClient, UpstreamFailed
from teamindex.upstream.pages import RETRY_STALE, PageCache, PageUnavailable


class Clock:
    """A settable time.time for the cache."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(fake_upstream: FakeUpstream) -> Iterator[UpstreamClient]:
    upstream = UpstreamClient(fake_upstream.url)
    yield upstream
    upstream.close()


def publish(fake: FakeUpstream, directory: Path, name: str, files: int) -> None:
    for number in range(files):
        fake.publish(directory, name, f"1.{number}")


def test_memory_keeps_the_most_recently_used_pages_within_its_budget(
    fake_upstream: FakeUpstream, client: UpstreamClient, tmp_path: Path
) -> None:
    for name, files in (("aa", 2), ("bb", 2), ("cc", 1), ("huge", 6)):
        publish(fake_upstream, tmp_path / "up", name, files)
    cache = PageCache(client, tmp_path / "pages", ttl=3600, stale_for=3600)
    cache.memory_files = 4  # files, as MEMORY_FILES counts them
    cache.get("aa")
    cache.get("bb")
    assert cache.peek("aa") is not None  # aa is now the most recent
    cache.get("cc")  # 5 files: the least recently used (bb) goes
    assert cache.peek("bb") is None
    assert cache.peek("aa") is not None and cache.peek("cc") is not None
    # A page pushed out of memory comes back from its copy on disk, not from upstream.
    asked = len(fake_upstream.seen)
    assert [f.version for f in cache.get("bb").files] == ["1.0", "1.1"]
    assert len(fake_upstream.seen) == asked
    assert cache.peek("bb") is not None and cache.peek("aa") is None
    # A page larger than the whole budget is still kept (alone), so it can be served.
    assert len(cache.get("huge").files) == 6
    assert cache.peek("huge") is not None
    assert [cache.peek(n) for n in ("aa", "bb", "cc")] == [None, None, None]
    assert cache._memory_weight == 6


def test_a_stale_copy_during_an_outage_asks_upstream_at_most_every_retry_interval(
    fake_upstream: FakeUpstream, client: UpstreamClient, tmp_path: Path
) -> None:
    publish(fake_upstream, tmp_path / "up", "six", 1)
    clock = Clock()
    cache = PageCache(client, tmp_path / "pages", ttl=60, stale_for=3600, clock=clock)
    good = cache.get("six")
    assert fake_upstream.count("/simple/six/") == 1
    fake_upstream.fail = 500
    clock.now += 61  # past the TTL: the next request revalidates, and upstream fails
    assert cache.get("six").files == good.files
    assert fake_upstream.count("/simple/six/") == 2
    for _ in range(20):  # within RETRY_STALE: the stale copy, from memory, upstream not asked
        clock.now += 1
        assert cache.get("six").files == good.files
        assert cache.peek("six") is not None  # the hot path answers it too
    assert fake_upstream.count("/simple/six/") == 2
    assert cache.stats.get("page", "stale") == 40
    clock.now += RETRY_STALE  # time to ask again: one request, still down, stale again
    assert cache.get("six").files == good.files
    assert cache.peek("six") is not None
    assert fake_upstream.count("/simple/six/") == 3
    fake_upstream.fail = None
    clock.now += RETRY_STALE  # upstream is back: the next request refreshes the copy
    assert cache.get("six").retry_after == 0.0
    assert fake_upstream.count("/simple/six/") == 4
    fake_upstream.fail = 500
    clock.now += 61
    cache.get("six")  # down again: stale, backing off...
    clock.now += 3600  # ...until the stale window ends: then upstream is asked, and it fails
    with pytest.raises(PageUnavailable) as failed:
        cache.get("six")
    assert failed.value.status == 502
    assert cache.peek("six") is None
    assert fake_upstream.count("/simple/six/") == 6


def test_an_error_answer_leaves_no_unread_body_on_a_kept_alive_connection(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """An error page's body left unread on a pooled connection was read as the next
    request's answer (a ProtocolError about every second time after an outage)."""
    wheel = fake_upstream.publish(tmp_path / "up", "six", "1.0")
    metadata_url = fake_upstream.url.replace("/simple/", f"/files/{wheel.filename}.metadata")
    single = UpstreamClient(fake_upstream.url, pool_size=1)  # every request reuses it
    try:
        for _ in range(100):  # each failure's body raced the next request (half were lost)
            fake_upstream.fail = 500
            with pytest.raises(UpstreamFailed):
                single.get_page("six", None)
            fake_upstream.fail = None
            assert single.get_page("six", None).status == 200
        for _ in range(100):
            fake_upstream.fail = 500
            with pytest.raises(UpstreamFailed):
                single.get_small(metadata_url, 1 << 20)
            fake_upstream.fail = None
            assert single.get_small(metadata_url, 1 << 20) == wheel.metadata
        for _ in range(20):
            assert single.get_page("nothing", None).status == 404  # a 404 with a body
            assert single.get_page("six", None).status == 200
            with pytest.raises(UpstreamFailed):
                single.get_small(metadata_url, 10)  # too large: left half read
            assert single.get_small(metadata_url, 1 << 20) == wheel.metadata
    finally:
        single.close()
