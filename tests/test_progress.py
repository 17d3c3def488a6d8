"""Progress lines: what is done, and an estimate of the time left from the mean cost of the done items."""

from __future__ import annotations

import logging

from sat2lod.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_format_duration():
    assert format_duration(0.4) == "0 s"
    assert format_duration(42) == "42 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(3720) == "1 h 02 min"


def test_progress_estimates_time_left_and_throttles(caplog):
    clock = FakeClock()
    p = Progress("training step", 400, logging.getLogger("t"), every_s=15.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        clock.t += 5.0
        p.update(10, "loss 0.5")  # first item: logged
        clock.t += 5.0
        p.update(20)  # 5 s after the last line: quiet
        clock.t += 10.0
        p.update(40)  # 20 s total for 40 steps: 0.5 s a step, 360 left
        clock.t += 180.0
        p.update(400)  # last: always logged, no estimate
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "training step 10/400 (2 %), 5 s elapsed, about 3 min 15 s left; loss 0.5",
        "training step 40/400 (10 %), 20 s elapsed, about 3 min 00 s left",
        "training step 400/400 (100 %), 3 min 20 s elapsed",
    ]


def test_progress_of_an_empty_loop():
    p = Progress("lod2 building", 0, logging.getLogger("t"), clock=FakeClock())
    assert p.message(0) == "lod2 building 0/0 (100 %), 0 s elapsed"
