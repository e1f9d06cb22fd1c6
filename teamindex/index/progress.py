"""Progress of long jobs (import, backup, restore, check) on stderr. No Flask here.

On a terminal: one line redrawn in place, a bar with counts, bytes and the time left, at
most every REDRAW_SECONDS. Otherwise (cron mail, the journal, a CI log): one plain line each
time another STEP_PERCENT of the work is done, so a log shows that the job moves without a
line per file. The percentage counts bytes when the job knows them (a 200 MB wheel is not
one file among many), else items. The formatting functions are pure and tested on their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.2
STEP_PERCENT = 10
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def format_bytes(count: int) -> str:
    """1536 -> '1.5 KiB'; plain bytes below 1 KiB."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """125 -> '2:05'; 3725 -> '1:02:05'."""
    whole = max(int(seconds + 0.5), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fraction_done(items: int, total_items: int, nbytes: int, total_bytes: int) -> float:
    """How much of the job is done, 0..1: by bytes when there are any, else by items."""
    if total_bytes > 0:
        return min(nbytes / total_bytes, 1.0)
    if total_items > 0:
        return min(items / total_items, 1.0)
    return 1.0


def seconds_left(fraction: float, elapsed: float) -> float | None:
    """The time left at the rate so far; None before anything is done."""
    if fraction <= 0:
        return None
    return elapsed * (1 - fraction) / fraction


def _counts(items: int, total_items: int, nbytes: int, total_bytes: int, unit: str) -> str:
    counted = f"{items}/{total_items} {unit}"
    if total_bytes <= 0:
        return counted
    return f"{counted}, {format_bytes(nbytes)} of {format_bytes(total_bytes)}"


def bar_line(
    label: str,
    items: int,
    total_items: int,
    nbytes: int,
    total_bytes: int,
    elapsed: float,
    unit: str = "files",
) -> str:
    """The terminal line: 'backup [######------]  42% 120/287 files, 1.2 GiB of 2.9 GiB,
    ETA 0:35'."""
    fraction = fraction_done(items, total_items, nbytes, total_bytes)
    filled = int(fraction * BAR_WIDTH)
    left = seconds_left(fraction, elapsed)
    eta = "done" if fraction >= 1 else f"ETA {format_duration(left) if left is not None else '?'}"
    return (
        f"{label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}% "
        f"{_counts(items, total_items, nbytes, total_bytes, unit)}, {eta}"
    )


def step_line(
    label: str,
    items: int,
    total_items: int,
    nbytes: int,
    total_bytes: int,
    elapsed: float,
    unit: str = "files",
) -> str:
    """The log line: 'backup: 40% (120/287 files, 1.2 GiB of 2.9 GiB) after 0:12, about
    0:18 left'."""
    fraction = fraction_done(items, total_items, nbytes, total_bytes)
    left = seconds_left(fraction, elapsed)
    tail = "" if fraction >= 1 or left is None else f", about {format_duration(left)} left"
    return (
        f"{label}: {fraction * 100:.0f}% ({_counts(items, total_items, nbytes, total_bytes, unit)})"
        f" after {format_duration(elapsed)}{tail}"
    )


class Progress:
    """Reports a job's progress to *out* (None: nowhere): call start() with the totals,
    advance() as work is done, finish() at the end (a terminal line then ends with a
    newline)."""

    def __init__(
        self,
        label: str,
        out: TextIO | None,
        *,
        unit: str = "files",
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.out = out
        self.unit = unit
        self.tty = (out is not None and out.isatty()) if tty is None else tty
        self.clock = clock
        self.items = self.total_items = self.nbytes = self.total_bytes = 0
        self._started = clock()
        self._drawn_at = -REDRAW_SECONDS
        self._next_step = STEP_PERCENT
        self._width = 0
        self._finished = False

    def start(self, total_items: int, total_bytes: int) -> None:
        self.total_items, self.total_bytes = total_items, total_bytes
        self._started = self.clock()

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        self.items += items
        self.nbytes += nbytes
        self._report(final=False)

    def finish(self) -> None:
        """End the report (again: no effect), also when the job failed half way."""
        if self._finished:
            return
        self._finished = True
        self._report(final=True)
        if self.out is not None and self.tty and self._width:
            self.out.write("\n")
            self.out.flush()

    def _args(self) -> tuple[str, int, int, int, int, float, str]:
        elapsed = self.clock() - self._started
        return (
            self.label,
            self.items,
            self.total_items,
            self.nbytes,
            self.total_bytes,
            elapsed,
            self.unit,
        )

    def _report(self, *, final: bool) -> None:
        if self.out is None or (self.total_items == 0 and self.total_bytes == 0):
            return  # nowhere to report, or nothing to do: no line at all
        if self.tty:
            now = self.clock()
            if final or now - self._drawn_at >= REDRAW_SECONDS:
                self._drawn_at = now
                line = bar_line(*self._args())
                self.out.write("\r" + line.ljust(self._width))
                self._width = len(line)
                self.out.flush()
            return
        percent = 100 * fraction_done(self.items, self.total_items, self.nbytes, self.total_bytes)
        if percent >= self._next_step:
            while self._next_step <= percent:
                self._next_step += STEP_PERCENT
            self.out.write(step_line(*self._args()) + "\n")
            self.out.flush()
