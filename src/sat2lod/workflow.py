"""Glue for the Snakemake script adapters: logging and thread caps.

Snakemake caps only OpenMP/BLAS threads; numba, torch and GDAL need their own caps so that a job uses
exactly the ``threads`` the rule asked for.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


def cap_threads(threads: int) -> None:
    """Cap numba, torch and GDAL threads to ``threads`` (>= 1)."""
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    os.environ["GDAL_NUM_THREADS"] = str(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    """Send the package's logging to ``log_path`` (and stderr) with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def setup(smk: Any) -> None:
    """Call first in every ``scripts/*.py``: log to ``snakemake.log[0]``, cap threads to ``snakemake.threads``."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    cap_threads(smk.threads)
    logging.getLogger("sat2lod").info("rule %s, threads=%s", smk.rule, smk.threads)
