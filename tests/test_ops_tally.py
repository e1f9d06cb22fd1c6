"""ops/tally.py: the hot path's counts made before the counters exist reach them, once."""

from __future__ import annotations

import threading
from collections import Counter

from teamindex.ops import tally as tally_module
from teamindex.ops.tally import Tally


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def count_request(self, rule: str, method: str, status: int, seconds: float | None) -> None:
        self.calls.append(("request", rule, method, status, seconds))

    def count_download(self, kind: str) -> None:
        self.calls.append(("download", kind))


def test_counts_before_the_counters_exist_are_replayed_in_order_then_passed_through() -> None:
    tally, counters = Tally(), Recorder()
    tally.count_request("/simple/", "GET", 200, 0.01)
    tally.count_download("dist")
    assert counters.calls == []
    tally.attach(counters)
    assert counters.calls == [("request", "/simple/", "GET", 200, 0.01), ("download", "dist")]
    tally.count_request("/simple/<name>/", "GET", 304, None)
    assert counters.calls[-1] == ("request", "/simple/<name>/", "GET", 304, None)


def test_no_count_is_lost_or_doubled_while_the_counters_arrive() -> None:
    tally, counters = Tally(), Recorder()
    threads = [
        threading.Thread(
            target=lambda: [tally.count_request("/simple/", "GET", 200, 0.0) for _ in range(2000)]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    tally.attach(counters)
    for thread in threads:
        thread.join(30)
    assert Counter(call[0] for call in counters.calls) == {"request": 8000}


def test_a_server_whose_counters_never_arrive_holds_a_bounded_number(monkeypatch) -> None:
    monkeypatch.setattr(tally_module, "MAX_HELD", 10)
    tally, counters = Tally(), Recorder()
    for _ in range(25):
        tally.count_download("dist")
    tally.attach(counters)
    assert len(counters.calls) == 10
