"""Peak RSS and CPU of a command, measured by GNU time (the benches' one way to measure a child process)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's machine name elsewhere): CPU seconds are compared
    only between runs on the same model."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; its peak RSS (MB), CPU (s) and wall (s), by GNU time (``/usr/bin/time -f %M``). Not by
    ``os.wait4`` from here: a child forked from this process starts with this process's resident pages, and
    Linux counts them in the child's ``ru_maxrss`` (a 27 MB parent made a bare interpreter read 27 MB, an
    800 MB one 790 MB); GNU time forks the measured command from its own few-MB process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M %U %S", "-o", f.name, *cmd],
            env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {cmd}")
        kb, user, sys_s = f.read().split()[-3:]
    return {
        "peak_rss_mb": round(int(kb) / 1024, 1),
        "cpu_s": round(float(user) + float(sys_s), 2),
        "wall_s": round(wall, 2),
    }
