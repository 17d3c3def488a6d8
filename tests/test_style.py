"""The formatters and linters decide style (issue 20): CI fails when the code drifts from them.

ruff and snakefmt are pinned in the ``test`` extra so that a new release does not change the verdict.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, check=False, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(exe).exists():
        pytest.fail(f"{name} is not installed: install the test extra (pip install -e '.[test]')")
    return exe


def test_ruff_check_clean() -> None:
    proc = _run([_tool("ruff"), "check", "."])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_clean() -> None:
    proc = _run([_tool("ruff"), "format", "--check", "."])
    assert proc.returncode == 0, "run `ruff format .`:\n" + proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakefmt_clean() -> None:
    proc = _run([_tool("snakefmt"), "--check", "Snakefile", "rules"])
    assert proc.returncode == 0, (
        "run `snakefmt Snakefile rules`:\n" + proc.stdout[-4000:] + proc.stderr[-4000:]
    )
