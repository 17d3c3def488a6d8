"""Glue for the Snakemake workflow: logging and thread caps for the script adapters, and the overview the
workflow prints when it starts.

Snakemake caps only OpenMP/BLAS threads; numba, torch and GDAL need their own caps so that a job uses
exactly the ``threads`` the rule asked for.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import sat2lod

#: Wall time of the demo (0.36 km², 3 views, synthetic) without training, on an idle 2-core machine, and
#: its area: the run overview scales it to the configured area and cores. Measured with
#: `python bench/demo_run.py` (bench/results/demo_run.json: wall 338 s less train_segmenter's 219 s);
#: remeasure when the chain's speed changes.
DEMO_WALL_S_2CORES = 119.0
DEMO_AREA_KM2 = 0.36
#: Seconds per training step of train_segmenter with the demo's training settings on 2 cores (same file:
#: 219 s for 400 steps, training cities included).
TRAIN_S_PER_STEP_2CORES = 0.55


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
    # EODAG's INFO lines ("unknown collection X" for a catalog outside its registry, "Download url: Not
    # Available" for an asset download) precede every successful download and read like failures;
    # sat2lod logs what it searched, chose and fetched. Its warnings and errors still show; -v shows all.
    logging.getLogger("eodag").setLevel(
        logging.DEBUG if level <= logging.DEBUG else max(level, logging.WARNING)
    )


def setup(smk: Any) -> None:
    """Call first in every ``scripts/*.py``: log to ``snakemake.log[0]``, cap threads to ``snakemake.threads``."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    cap_threads(smk.threads)
    logging.getLogger("sat2lod").info("rule %s, threads=%s", smk.rule, smk.threads)


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
