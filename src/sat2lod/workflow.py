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


def log_uncaught_errors() -> None:
    """Write an exception that ends the script (with its traceback) to the log files too.

    Snakemake shows it on the terminal but the rule's ``log:`` file got only the log records, so the log of a
    failed job did not say why it failed. The hook writes to the file handlers of the root logger (stderr has
    the usual traceback from the previous hook).
    """
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if not issubclass(exc_type, KeyboardInterrupt):
            record = logging.getLogger("sat2lod").makeRecord(
                "sat2lod",
                logging.ERROR,
                __file__,
                0,
                "job failed: %s: %s",
                (exc_type.__name__, exc),
                (exc_type, exc, tb),
            )
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def setup(smk: Any) -> None:
    """Call first in every ``scripts/*.py``: log to ``snakemake.log[0]`` (uncaught errors included), cap threads
    to ``snakemake.threads``."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    log_uncaught_errors()
    cap_threads(smk.threads)
    logging.getLogger("sat2lod").info("rule %s, threads=%s", smk.rule, smk.threads)
