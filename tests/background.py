"""Test runs that mostly wait, started when the session starts and checked by their test later.

A workflow run through a cluster executor (SLURM, the fake Kubernetes API) spends most of its wall time
waiting on the scheduler: the executor polls the job states every few seconds (the SLURM plugin backs off by
10 s after each poll that finds no job finished), and the chain is a line of jobs. Such a run used a few
percent of the machine for minutes; a run with ``--cores 1`` leaves one core of two idle. A test marked
``@pytest.mark.background("<function>")`` has the function ``<function>(tmp: Path)`` of its module run in a
thread from the session's first test on (tests/conftest.py, only when the test itself is selected); the rest
of the suite runs meanwhile, and the test takes the function's return value from the ``background_run``
fixture, which waits for it. Whatever the function raised (a failed run's ``pytest.fail``, a
``pytest.skip``) is raised again in the test.

While they run, the rest of the suite shares the process with them: a foreground test must not measure
process-wide state that their subprocesses change. ``resource.getrusage(RUSAGE_CHILDREN)`` counts every child
any thread reaped (a CPU bound of bench/stereo_vs_cars.py read 18.9 CPU-s of background runs this way; it now
takes its command's own rusage from ``os.wait4``), and ``os.environ`` is copied into their subprocesses when
they start.

The background runs go one after the other, in the order of the tests: on a fresh checkout the first one
compiles the numba kernels into their cache, and the next ones find them there instead of compiling them
again at the same time. The modules holding such tests run last (tests/conftest.py), so that the suite does
not wait on a run halfway through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class BackgroundRun(threading.Thread):
    """``fn(tmp)`` in a daemon thread; its return value, or what it raised, kept for the test."""

    def __init__(
        self, name: str, fn: Callable[[Path], Any], tmp: Path, after: BackgroundRun | None = None
    ) -> None:
        super().__init__(name=f"background:{name}", daemon=True)
        self.fn, self.tmp, self.after = fn, tmp, after
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if self.after is not None:
            self.after.join()
        try:
            self.result = self.fn(self.tmp)
        except BaseException as exc:  # noqa: BLE001 - pytest.fail / skip are BaseExceptions: handed to the test
            self.error = exc

    def outcome(self, timeout_s: float) -> Any:
        """Wait (at most ``timeout_s``) for the run; its return value, or raise what it raised."""
        self.join(timeout_s)
        if self.is_alive():
            pytest.fail(f"{self.name} still running after {timeout_s:.0f} s more (started with the session)")
        if self.error is not None:
            raise self.error
        return self.result
