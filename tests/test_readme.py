"""The README's quick start is what CI runs: two command lines, the second verbatim in .ci/run, both in a
venv (PEP 668 systems refuse a system-wide pip) with the CPU build of torch by default."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the quick start has exactly one bash block"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_quick_start_is_two_lines_in_a_venv_with_cpu_torch():
    lines = quick_start_lines()
    assert len(lines) == 2, lines
    torch_pin = next(
        d
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("torch==")
    )
    for line in lines:
        steps = [shlex.split(s) for s in line.split(" && ")]
        assert steps[0][:3] == ["python3", "-m", "venv"] and steps[0][-1] == ".venv", line
        assert steps[1] == [".", ".venv/bin/activate"], line
        # the CPU wheel by default, at the version pyproject pins
        assert steps[2] == [
            "pip",
            "install",
            torch_pin,
            "--index-url",
            "https://download.pytorch.org/whl/cpu",
        ]
    # `python -m`: the venv's interpreter, even where a system-wide snakemake/pytest script comes first
    assert lines[0].endswith("&& pip install -e . && python -m snakemake --cores all")
    assert lines[1].endswith('&& pip install -e ".[test]" && python -m pytest')
    assert "/.venv/" in (REPO / ".gitignore").read_text().splitlines()


def test_ci_runs_the_readme_test_line_verbatim_after_starting_slurm():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    test_line = quick_start_lines()[1]
    assert ci.count(test_line) == 1, "the README's test line must appear verbatim in .ci/run"
    start = ci.index("bash tests/cluster/start_local_slurm.sh")
    assert start < ci.index(test_line), "the SLURM cluster starts before the tests"


def test_readme_says_where_the_real_data_come_from():
    text = (REPO / "README.md").read_text()
    assert "../shared/data" in text and "SOURCE.md" in text and "skip" in text
