"""Progress lines a person can follow in a long job's log: ``what i/n (p %), elapsed, about T left``.

The estimate of the time left assumes the remaining items cost, on average, what the done ones cost
(steps of a training run, stereo pairs of a tile, buildings of a city model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: durations in a log line (seconds >= 0)."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Log the progress of a loop of ``total`` items, at most every ``every_s`` seconds and at the end.

    Args:
        what: what is counted, e.g. ``"training step"`` or ``"lod2 building"``.
        total: number of items (>= 0).
        logger: where the lines go (INFO).
        every_s: least time between two lines (s); the first and the last item are always logged.
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger,
        every_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.log, self.every_s, self.clock = what, int(total), logger, every_s, clock
        self.t0 = clock()
        self._last: float | None = None

    def message(self, done: int, detail: str = "") -> str:
        """The progress line after ``done`` items."""
        elapsed = self.clock() - self.t0
        pct = 100.0 * done / self.total if self.total else 100.0
        text = f"{self.what} {done}/{self.total} ({pct:.0f} %), {format_duration(elapsed)} elapsed"
        if 0 < done < self.total:
            text += f", about {format_duration(elapsed / done * (self.total - done))} left"
        return f"{text}; {detail}" if detail else text

    def update(self, done: int, detail: str = "") -> None:
        """Record that ``done`` items are finished; log a line if it is time to (or if it is the last)."""
        now = self.clock()
        due = self._last is None or now - self._last >= self.every_s or done >= self.total
        if due:
            self._last = now
            self.log.info("%s", self.message(done, detail))
