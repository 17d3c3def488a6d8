"""Copies of the workflow into a fresh working directory (tests, benchmarks, out-of-tree runs), so that a
run never touches the repository's own results/."""

from __future__ import annotations

import shutil
from pathlib import Path

#: what a checkout needs to run the workflow (the package itself is installed: pip install -e .)
WORKFLOW_ENTRIES = ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "report")


def copy_workflow(
    dest: str | Path, repo: str | Path, extra: tuple[str, ...] = (), replace: bool = False
) -> Path:
    """Copy the workflow files of ``repo`` (plus ``extra`` entries, e.g. ``"tests/data"``) into ``dest``.

    Args:
        replace: remove ``dest`` first when it exists (otherwise it must not exist).
    """
    dest, repo = Path(dest), Path(repo)
    if replace and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in (*WORKFLOW_ENTRIES, *extra):
        src = repo / entry
        if src.is_dir():
            shutil.copytree(src, dest / entry, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            (dest / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / entry)
    return dest
