"""upstream/pages.PageCache on its own, against the loopback fake upstream (upstream_support):
its memory stays within a budget, and a stale copy during an outage does not make every
request wait for upstream again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from upstream_support import FakeUpstream

from teamindex.upstream.client import UpstreamClient, UpstreamFailed
from teamindex.upstream.pages import PageCache


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
