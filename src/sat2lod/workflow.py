"""Glue for the Snakemake script adapters: logging and thread caps.

Snakemake caps only OpenMP/BLAS threads; numba, torch and GDAL need their own caps so that a job uses
exactly the ``threads`` the rule asked for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
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


# ---------------------------------------------------------------------------------------- run ownership
#: file naming the live run of a working directory (written by the Snakefile's onstart, removed at the end)
RUN_FILE = ".snakemake/sat2lod_run.json"


class ActiveRunError(RuntimeError):
    """Another live sat2lod run holds this working directory; the message names it and what to do."""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def active_run(run_file: str | os.PathLike[str] = RUN_FILE) -> dict[str, Any] | None:
    """The run recorded in ``run_file`` if it is alive on this host and is not this process or its parent
    (a job of that run); None otherwise (no file, a dead or foreign process, or another host)."""
    path = Path(run_file)
    try:
        run = json.loads(path.read_text())
        pid = int(run["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run.get("host") != socket.gethostname() or pid in _ancestors():
        return None
    if "snakemake" not in _cmdline(pid):  # dead, or the pid was reused by another program
        return None
    return run


def claim_run_directory(run_file: str | os.PathLike[str] = RUN_FILE) -> None:
    """Record this process as the live run of the working directory (Snakefile ``onstart``)."""
    path = Path(run_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    path.write_text(json.dumps(run) + "\n")


def release_run_directory(run_file: str | os.PathLike[str] = RUN_FILE) -> None:
    """Remove the record written by :func:`claim_run_directory` if it is this process's (``onsuccess``/``onerror``)."""
    path = Path(run_file)
    try:
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass


def guard_run_directory(argv: list[str], run_file: str | os.PathLike[str] = RUN_FILE) -> None:
    """Called when the Snakefile is parsed: refuse ``--unlock`` while another live run holds the directory, and
    warn a second run that Snakemake's "cannot be locked" hint (use --unlock) does not apply.

    Raises:
        ActiveRunError: ``--unlock`` asked while the run of ``run_file`` is alive (both runs would fail and
            delete each other's outputs, e.g. ``scenes.json`` and the downloads).
    """
    # a job of a run: cluster executors re-parse the Snakefile in each job
    if "--target-jobs" in argv or "--mode" in argv:
        return
    run = active_run(run_file)
    if run is None:
        return
    who = f"pid {run['pid']} on {run['host']}, started {run.get('started')}: {run.get('command')}"
    if "--unlock" in argv:
        raise ActiveRunError(
            f"another sat2lod run is active in this directory ({who}). --unlock now would make both runs "
            "fail and delete each other's outputs. Wait for it to end, or stop it first (kill "
            f"{run['pid']}), then run --unlock only if Snakemake still reports a lock. If that process is not "
            f"a sat2lod run, delete {run_file}."
        )
    print(
        f"sat2lod: another run is active in this directory ({who}). If Snakemake reports that the directory "
        "cannot be locked, wait for that run or stop it; do not use --unlock while it is alive.",
        file=sys.stderr,
    )
