"""upstream/pages.PageCache on its own, against the loopback fake upstream (upstream_support):
its memory stays within a budget, and a stale copy during an outage does not make every
request wait for upstream again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from upstream_support import FakeUpstream

from teamindex.upstream.client import UpstreamClient
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
