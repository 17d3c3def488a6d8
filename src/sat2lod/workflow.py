"""Glue for the Snakemake workflow: logging and thread caps for the script adapters, and the overview the
workflow prints when it starts.

Snakemake caps only OpenMP/BLAS threads; numba, torch and GDAL need their own caps so that a job uses
exactly the ``threads`` the rule asked for.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sat2lod
from sat2lod.memory import release_memory

#: Wall time of the demo (0.36 km², 3 views, synthetic) without training, on an idle 2-core machine, and
#: its area: the run overview scales it to the configured area and cores. Measured with
#: `python bench/demo_run.py` with the shipped model, no training, jobs of 16 tiles: 93 s wall on the 2-core machine
#: that also timed the training steps below; 39 s on a 2-core AMD EPYC after the thread caps of the fifteenth
#: stop (bench/results/demo_run.json now has 47 s: ~9 s of it the SLURM executor plugin of the test extras,
#: waiting at each snakemake start for a stopped controller). The slower machine's figure is kept: an estimate,
#: not a promise.
DEMO_WALL_S_2CORES = 93.0
DEMO_AREA_KM2 = 0.36
#: Seconds per training step of train_segmenter with the demo's training settings (segmentation.torch_threads
#: 1): the synthetic-only recipe of default model v1, 400 steps, took 250 CPU-s of training on this machine, 0.63 s
#: a step.
TRAIN_S_PER_STEP_2CORES = 0.63


def cap_threads(threads: int) -> None:
    """Cap numba, torch, OpenMP and BLAS threads to ``threads`` (>= 1), GDAL's to 1; idle OpenMP threads sleep."""
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    # numba's parallel kernels run on OpenMP (libgomp) here. Its idle threads spin for some milliseconds
    # after each parallel region, burning CPU while the main thread reads, rasterizes or writes between
    # kernels: 0.9 of the 4.6 CPU-s of the Gizeh stereo job, with no gain in wall time. PASSIVE sleeps.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # GDAL reads and writes in one thread whatever ``threads`` is: the jobs already keep their cores busy (numba,
    # torch, one job per core), and GDAL's threads cost more than they give on this chain's files. Measured
    # (rasterio, open + read): a window of a GeoTIFF sensor image in strips of 2 rows, 0.7 ms in one thread,
    # 16 ms of wall and 12 ms of CPU with GDAL_NUM_THREADS=2 (~0.4 of the Gizeh stereo job's 3.5 CPU-s); a
    # whole 1238 x 986 DEFLATE COG, 10 ms in one thread, 12-17 ms of wall and 20 ms of CPU in two. The files
    # written are the same bytes (each block is compressed on its own).
    os.environ["GDAL_NUM_THREADS"] = "1"
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        # numba sizes its thread pool from NUMBA_NUM_THREADS when it is first imported: the same cap without
        # importing it here (0.3 CPU-s per job, for the rules that never use numba)
        try:
            current = int(os.environ.get("NUMBA_NUM_THREADS", threads))
        except ValueError:
            current = threads
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, min(threads, current)))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def tile_jobs(tiles: list[str], tiles_per_job: int) -> dict[str, list[str]]:
    """Group the tiles of the tiling checkpoint into the jobs of the per-tile rules (``stereo_tile`` ... ``lod2_tile``).

    Args:
        tiles: tile ids in the grid's order (``t{row:04d}_{col:04d}``, row-major).
        tiles_per_job: the most tiles one job takes (config ``tiling.tiles_per_job``, >= 1).
    Returns:
        ``{job id: [tile ids]}``, job ids ``j{k:04d}`` from 0: ``ceil(len(tiles) / tiles_per_job)`` jobs of
        consecutive tiles, their sizes differing by at most one (the first jobs take the extra tiles), so the
        grouping depends only on the tile list and ``tiles_per_job``. Concatenated in job order, the lists give
        ``tiles`` back.
    """
    per_job = int(tiles_per_job)
    if per_job < 1:
        raise ValueError(f"tiling.tiles_per_job must be >= 1, not {tiles_per_job!r}")
    n_jobs = -(-len(tiles) // per_job)
    if n_jobs > 10_000:
        raise ValueError(
            f"{len(tiles)} tiles in jobs of {per_job} make {n_jobs} jobs, more than the job id j{{k:04d}} "
            "can name: raise tiling.tiles_per_job or tiling.tile_size_m"
        )
    base, extra = divmod(len(tiles), max(n_jobs, 1))
    jobs, start = {}, 0
    for k in range(n_jobs):
        size = base + (1 if k < extra else 0)
        jobs[f"j{k:04d}"] = list(tiles[start : start + size])
        start += size
    return jobs


def job_params(smk: Any) -> tuple[list[str], dict[str, Any]]:
    """For the adapter of a per-tile rule run as jobs of tiles: (the job's tile ids, the rule's other params).

    The job's tiles are those :func:`tile_jobs` gives job ``{job}`` from the tiling checkpoint's grid
    (``input.tiles``) and ``params.tiles_per_job``, which the rule lists so that a change of
    ``tiling.tiles_per_job`` reruns the jobs (a param reading the checkpoint fails in a remote job: the grid is
    an input, fetched from storage before the script runs).
    """
    params = dict(smk.params.items())
    per_job = params.pop("tiles_per_job")
    with open(smk.input.tiles, encoding="utf-8") as fh:
        ids = [f["properties"]["tile"] for f in json.load(fh)["features"]]
    jobs = tile_jobs(ids, per_job)
    job = smk.wildcards.job
    if job not in jobs:
        raise ValueError(
            f"{smk.input.tiles}: no job {job} in {len(jobs)} jobs of {per_job} tiles; the tile grid or "
            "tiling.tiles_per_job changed: rerun the workflow."
        )
    return jobs[job], params


def tile_folders(tiles: list[str], archive: str | os.PathLike[str]) -> Iterator[tuple[str, Path]]:
    """Each tile of a job with a folder for its files, logging the job's progress; once every tile is done,
    the folders are packed into ``archive``, the job's one output: an uncompressed tar of ``{tile}/<file>``
    (one file per job, which every storage handles; a folder output is not seen in S3 by the storage plugin
    once it was looked up missing). The tar is written to a temporary name then renamed, and is the same
    bytes for the same files (sorted members, no time stamps or owners). The staging folder
    ``{archive}.staging`` is removed whatever happens."""
    from sat2lod.progress import Progress

    log = logging.getLogger("sat2lod")
    archive = Path(archive)
    staging = archive.with_name(archive.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    # what the imports made (modules, numba's types) is frozen out of the collections between tiles, which
    # then scan only what the tiles make (Gizeh stereo job: ~30 ms less a tile). Nothing of a tile is frozen:
    # freezing after the first tile kept its garbage alive (16 stereo tiles peaked 90 MB higher).
    gc.collect()
    gc.freeze()
    try:
        progress = Progress(f"job {archive.stem}: tile", len(tiles), log, every_s=0.0)
        for n, tile in enumerate(tiles):
            progress.update(n, f"next {tile}")
            folder = staging / tile
            folder.mkdir(parents=True, exist_ok=True)
            yield tile, folder
            release_memory()
        progress.update(len(tiles))
        _pack(staging, archive)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pack(folder: Path, archive: Path) -> None:
    """``folder``'s files into the uncompressed tar ``archive`` (members relative to ``folder``, sorted, mode
    0644, no time stamp or owner), through a temporary file renamed at the end."""
    part = archive.with_name(archive.name + ".part")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f.relative_to(folder).as_posix())
            info.size, info.mode, info.mtime = f.stat().st_size, 0o644, 0
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    os.replace(part, archive)


_TILE_MEMBER = re.compile(r"(t\d{4}_\d{4})/([^/]+)")


@contextmanager
def unpacked_tiles(archives: list[str] | tuple[str, ...], *names: str) -> Iterator[list[list[str]]]:
    """The files ``{tile}/<name>`` of the jobs of a per-tile rule (the archives of :func:`tile_folders`),
    unpacked into a temporary folder beside the first archive for the time of the ``with`` block: one list of
    paths per name, in job order then tile id order (the order of the tile grid, whatever
    ``tiling.tiles_per_job``, so a merge adds the tiles in the same order).

    Raises:
        FileNotFoundError: no archive, an archive without a tile's ``<name>``, or a tile two archives hold
            (archives of another ``tiles_per_job``), naming the file and the fix.
    """
    if not archives:
        raise FileNotFoundError("no job archive of a per-tile rule (empty tile grid): rerun the workflow.")
    tmp = Path(tempfile.mkdtemp(prefix=".unpacked-", dir=Path(archives[0]).parent))
    try:
        out: list[list[str]] = [[] for _ in names]
        seen: dict[str, str] = {}
        for a in archives:
            with tarfile.open(a, "r:") as tar:
                members = {}
                for m in tar.getmembers():
                    hit = _TILE_MEMBER.fullmatch(m.name)
                    if hit and m.isfile() and hit.group(2) in names:
                        members[(hit.group(1), hit.group(2))] = m
                tiles = sorted({t for t, _ in members})
                if not tiles:
                    raise FileNotFoundError(
                        f"{a}: no tile file {list(names)} in this job's archive; delete it and rerun."
                    )
                for tile in tiles:
                    if tile in seen:
                        raise FileNotFoundError(
                            f"{a}: tile {tile} is also in {seen[tile]} (archives of another "
                            "tiling.tiles_per_job); delete both and rerun the workflow."
                        )
                    seen[tile] = str(a)
                    for k, name in enumerate(names):
                        m = members.get((tile, name))
                        if m is None:
                            raise FileNotFoundError(
                                f"{a}: no {tile}/{name} in this job's archive; delete it and rerun."
                            )
                        dest = tmp / Path(a).name / tile / name
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(m)
                        assert src is not None  # a regular file
                        with src, open(dest, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        out[k].append(str(dest))
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    """Send the package's logging to ``log_path`` (and stderr) with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # EODAG's INFO lines ("unknown collection X" for a catalog outside its registry, "Download url: Not
    # Available" for an asset download) precede every successful download and read like failures;
    # sat2lod logs what it searched, chose and fetched. Its warnings and errors still show; -v shows all.
    logging.getLogger("eodag").setLevel(
        logging.DEBUG if level <= logging.DEBUG else max(level, logging.WARNING)
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


def _rough(seconds: float) -> str:
    """An estimate without false precision: ``30 s``, ``4 min``, ``1.5 h``."""
    if seconds < 60:
        return f"{max(10, round(seconds / 10) * 10)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _area_km2(config: dict[str, Any]) -> float | None:
    """Area of the AOI (km²): the synthetic scene's, else that of ``aoi.bbox_lonlat``; None if unknown."""
    source = config.get("source", {})
    if source.get("kind") == "synthetic":
        return float(source["synthetic"]["size_m"]) ** 2 / 1e6
    bbox = config.get("aoi", {}).get("bbox_lonlat")
    if not bbox:
        return None
    west, south, east, north = (float(v) for v in bbox)
    km_per_deg_lat = 111.2  # mean meridian degree; enough for an estimate
    lat = math.radians((south + north) / 2)
    return abs(east - west) * km_per_deg_lat * math.cos(lat) * abs(north - south) * km_per_deg_lat


def run_overview(
    config: dict[str, Any], cores: int | None, checkpoint: str | None, trains: bool
) -> list[str]:
    """Lines that say what a run of the workflow will do and roughly how long it takes.

    Args:
        config: the validated workflow config.
        cores: cores given to snakemake (``--cores``); None for a cluster executor (the estimate is then
            in CPU time).
        checkpoint: the segmentation checkpoint the segment rule reads (None: no U-Net).
        trains: whether the run trains the segmenter first (rule train_segmenter).
    Returns:
        Plain text lines (no trailing newline), for the workflow's log.
    """
    source = config["source"]
    kind = source["kind"]
    area = _area_km2(config)
    where = f"{area:.2f} km²" if area is not None else "area set by the images"
    if kind == "synthetic":
        syn = source["synthetic"]
        what = (
            f"a synthetic city ({syn['size_m']:g} m x {syn['size_m']:g} m, {syn['n_views']} views, "
            f"seed {syn['seed']}) published as a local STAC catalog and fetched through EODAG"
        )
    elif kind == "local":
        what = f"{len(source['local']['images'])} local images"
    else:
        what = (
            f"STAC collection {source['stac'].get('collection')} of {source['stac'].get('provider')} (EODAG)"
        )
    seg = config["segmentation"]
    if seg["method"] != "unet":
        segment = f"building mask by {seg['method']}"
    elif trains:
        segment = f"U-Net trained first ({seg['train']['steps']} steps on synthetic cities)"
    else:
        segment = f"U-Net with {checkpoint}"
    if seg["method"] == "unet" and seg.get("labels"):
        segment += f", fine-tuned on the footprints of {seg['labels']} ({seg['finetune']['steps']} steps)"
    lines = [
        f"sat2lod {sat2lod.__version__}: AOI '{config['aoi']['name']}' ({where}) from {what}.",
        (
            "Chain: stereo per tile -> DSM mosaic -> DTM, nDSM -> true ortho -> "
            f"{segment} -> LOD0 footprints -> LOD1, LOD2 CityJSON -> accuracy -> figures."
        ),
    ]
    # wall times on 2 cores, scaled from the demo; about twice that in CPU time; more cores help up to a few
    chain = DEMO_WALL_S_2CORES / DEMO_AREA_KM2 * (area if area is not None else 1.0)
    if area is not None:
        chain = max(chain, DEMO_WALL_S_2CORES / 4)  # fixed costs (start-up, imports) of a small AOI
    train = TRAIN_S_PER_STEP_2CORES * seg["train"]["steps"] if trains else 0.0

    def time_of(wall_2cores: float) -> str:
        if cores is None:
            return f"{_rough(2 * wall_2cores)} of CPU time"
        return _rough(wall_2cores * 2.0 / max(1, min(int(cores), 8)))

    if area is None:
        estimate = f"about {time_of(chain)} per km² of images" + (
            f" plus {time_of(train)} of training" if trains else ""
        )
    else:
        estimate = f"roughly {time_of(chain + train)}"
    if cores is None:
        estimate += " over the cluster's jobs"
    else:
        estimate += f" with {cores} core{'s' if cores != 1 else ''} on an idle machine"
    lines.append(
        f"Expected: {estimate} (scaled from the demo's timing); long jobs log their progress and the "
        "time left in logs/<rule>/, and the lines below count the jobs done."
    )
    return lines
