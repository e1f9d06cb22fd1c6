"""The progress helper of import, backup, restore and check: pure formatting, and what a
terminal and a log each get."""

from __future__ import annotations

import io

import pytest

from teamindex.index.progress import (
    Progress,
    bar_line,
    format_bytes,
    format_duration,
    fraction_done,
    seconds_left,
    step_line,
)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 << 20, "5.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (2048 << 40, "2048.0 TiB"),
    ],
)
def test_format_bytes(count, text):
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (0.4, "0:00"), (59.6, "1:00"), (125, "2:05"), (3725, "1:02:05"), (-3, "0:00")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("items", "total_items", "nbytes", "total_bytes", "fraction"),
    [
        (1, 4, 900, 1000, 0.9),  # bytes decide when known: one big file is most of the work
        (2, 4, 0, 0, 0.5),  # no bytes: items
        (0, 0, 0, 0, 1.0),  # nothing to do is done
        (5, 4, 2000, 1000, 1.0),  # never past 100% (a file grew meanwhile)
    ],
)
def test_fraction_done(items, total_items, nbytes, total_bytes, fraction):
    assert fraction_done(items, total_items, nbytes, total_bytes) == fraction


def test_seconds_left():
    assert seconds_left(0.0, 10) is None
    assert seconds_left(0.25, 10) == 30
    assert seconds_left(1.0, 10) == 0


def test_bar_line():
    assert bar_line("backup", 120, 287, 3 << 29, 3 << 30, 12) == (
        "backup [############------------]  50% 120/287 files, 1.5 GiB of 3.0 GiB, ETA 0:12"
    )
    assert bar_line("check", 0, 10, 0, 100, 0.5).endswith(
        "  0% 0/10 files, 0 bytes of 100 bytes, ETA ?"
    )
    assert bar_line("check", 10, 10, 100, 100, 3).endswith(
        "100% 10/10 files, 100 bytes of 100 bytes, done"
    )


def test_step_line():
    assert step_line("restore", 3, 10, 40, 100, 4) == (
        "restore: 40% (3/10 files, 40 bytes of 100 bytes) after 0:04, about 0:06 left"
    )
    assert step_line("restore", 10, 10, 100, 100, 9) == (
        "restore: 100% (10/10 files, 100 bytes of 100 bytes) after 0:09"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_one_line_per_ten_percent():
    out, clock = io.StringIO(), Clock()
    progress = Progress("backup", out, tty=False, clock=clock)
    progress.start(200, 200_000)
    for _ in range(200):
        clock.now += 0.5
        progress.advance(1, 1000)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert lines[0] == (
        "backup: 10% (20/200 files, 19.5 KiB of 195.3 KiB) after 0:10, about 1:30 left"
    )
    assert lines[-1] == "backup: 100% (200/200 files, 195.3 KiB of 195.3 KiB) after 1:40"


def test_a_big_step_prints_one_line_not_one_per_ten_percent():
    out = io.StringIO()
    progress = Progress("check", out, tty=False, clock=Clock())
    progress.start(2, 100)
    progress.advance(1, 95)  # one big file: 95 %
    progress.advance(1, 5)
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["95%", "100%"]


def test_a_terminal_gets_one_line_redrawn_at_most_five_times_a_second():
    out, clock = io.StringIO(), Clock()
    progress = Progress("restore", out, tty=True, clock=clock)
    progress.start(1000, 0)
    for _ in range(1000):
        clock.now += 0.001  # one second in all
        progress.advance()
    progress.finish()
    text = out.getvalue()
    assert text.rstrip(" \n").endswith("] 100% 1000/1000 files, done")
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert 5 <= text.count("\r") <= 7  # the first draw, every 0.2 s, and the last
    assert "\r" + "restore [" in text


def test_nothing_to_do_prints_nothing():
    out = io.StringIO()
    for tty in (True, False):
        progress = Progress("check", out, tty=tty, clock=Clock())
        progress.start(0, 0)
        progress.finish()
    assert out.getvalue() == ""


def test_tty_is_taken_from_the_stream():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Progress("x", Terminal()).tty is True
    assert Progress("x", io.StringIO()).tty is False
