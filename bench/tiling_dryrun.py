"""Benchmark: does the DAG scale? Snakemake dry run of a chain fanned out over N tiles by the ``tiles`` checkpoint.

The workflow is the repository's rules/common.smk + rules/acquire.smk + rules/tiling.smk, with two stand-in
rules for the per-tile stereo job and the mosaic gather (same paths and wildcards as rules/stereo.smk), so the
figure does not depend on the state of the other stages. The scene sheet and a tile grid of N tiles (made by
sat2lod.tiling over an AOI of the right size) are written first, then ``snakemake -n`` is timed for the mosaic
target: Snakemake re-evaluates the checkpoint, reads the N tile ids and builds N + 1 jobs.

Also timed: sat2lod.tiling's grid + visibility selection for N tiles (the work of the checkpoint job itself).

Usage:  python bench/tiling_dryrun.py [--tiles 10000] [--peer 100] [--out bench/results/tiling_dryrun.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sat2lod.tiling import grid_spec, select_tiles, tile_cores, tiles_feature_collection

SNAKEFILE_HEAD = """
from snakemake.utils import validate
configfile: "config/config.yaml"
validate(config, "config/schema.yaml")
include: "rules/common.smk"
include: "rules/acquire.smk"
include: "rules/tiling.smk"

rule mosaic_dsm:    # stand-in gather, inputs from the checkpoint like rules/stereo.smk
    input:
        lambda w: expand("results/stereo/{aoi}/{tile}/dsm.tif", aoi=w.aoi, tile=tile_ids(w)),
    output:
        "results/mosaic/{aoi}/dsm.tif",
    log:
        "logs/mosaic_dsm/{aoi}.log",
    shell:
        "touch {output}"
"""

# variant "input": the per-tile job takes the tile GeoJSON (a checkpoint output) as input
STEREO_INPUT = """
rule stereo_tile:   # stand-in with the paths of rules/stereo.smk
    input:
        scenes="results/acquire/{aoi}/scenes.json",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        dsm="results/stereo/{aoi}/{tile}/dsm.tif",
    log:
        "logs/stereo_tile/{aoi}/{tile}.log",
    shell:
        "touch {output}"
"""

# variant "params": the per-tile job gets its bounds as params (read once from the GeoJSON, cached), so a
# changed tile reruns through the params trigger, and no job depends directly on the checkpoint output
STEREO_PARAMS = """
import functools, json

@functools.cache
def _tile_bounds(path, mtime):
    with open(path) as fh:
        return {f["properties"]["tile"]: f["properties"]["bounds"] for f in json.load(fh)["features"]}

def tile_bounds(wildcards):
    path = checkpoints.tiles.get(aoi=wildcards.aoi).output.tiles
    return _tile_bounds(path, os.path.getmtime(path))[wildcards.tile]

rule stereo_tile:
    input:
        scenes="results/acquire/{aoi}/scenes.json",
    output:
        dsm="results/stereo/{aoi}/{tile}/dsm.tif",
    log:
        "logs/stereo_tile/{aoi}/{tile}.log",
    params:
        bounds=tile_bounds,
    shell:
        "touch {output}"
"""


def write_inputs(work: Path, n_tiles: int) -> dict:
    """Scene sheet + tile grid of ``n_tiles`` (square grid, 500 m tiles) in ``work``; returns timings."""
    side = math.ceil(math.sqrt(n_tiles))
    tile = 500.0
    x0, y0 = 400_000.0, 5_000_000.0
    aoi = [x0, y0, x0 + side * tile, y0 + side * tile]
    t = time.perf_counter()
    spec = grid_spec(aoi, tile, 20.0, 0.5)
    cores = tile_cores(spec)
    visible = shapely.box(*aoi).buffer(-1.0)  # everything visible: all tiles kept
    keep = select_tiles(cores, visible)
    keep[n_tiles:] = False  # exactly n_tiles
    fc = tiles_feature_collection(spec, cores, keep, 32631)
    t_grid = time.perf_counter() - t
    (work / "results/acquire/demo").mkdir(parents=True)
    (work / "results/tiles/demo").mkdir(parents=True)
    (work / "results/acquire/demo/scenes.json").write_text(
        json.dumps({"aoi": "demo", "epsg": 32631, "aoi_bounds": aoi})
    )
    (work / "results/tiles/demo/tiles.geojson").write_text(json.dumps(fc))
    now = time.time()
    os.utime(work / "results/acquire/demo/scenes.json", (now - 60, now - 60))  # checkpoint output is newer
    return {"grid_and_select_s": t_grid, "tiles": int(keep.sum()), "grid": [spec.n_rows, spec.n_cols]}


def dry_run(n_tiles: int, variant: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="sat2lod-bench-") as tmp:
        work = Path(tmp)
        for d in ("rules", "scripts", "config", "envs"):
            (work / d).symlink_to(REPO / d)
        (work / "Snakefile").write_text(
            SNAKEFILE_HEAD + (STEREO_INPUT if variant == "input" else STEREO_PARAMS)
        )
        res = write_inputs(work, n_tiles)
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "results/mosaic/demo/dsm.tif",
            "-n",
            "--cores",
            "1",
            "--rerun-triggers",
            "mtime",
        ]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
        res["dry_run_s"] = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time of the snakemake process: what it would take on an idle core (the wall time depends on load)
        res["dry_run_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake -n failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        out = proc.stdout + proc.stderr
        # the job table lists the per-tile rule with its count
        lines = out.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.startswith("Job stats:"))
        counts = {}
        for ln in lines[start + 3 :]:
            parts = ln.split()
            if len(parts) != 2 or not parts[1].isdigit():
                break
            counts[parts[0]] = int(parts[1])
        res["jobs"] = counts
        if counts.get("stereo_tile") != n_tiles:
            raise RuntimeError(f"expected {n_tiles} stereo_tile jobs, got {counts}:\n{out[-2000:]}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=10_000)
    ap.add_argument("--peer", type=int, default=100, help="smaller run of the same script, for the ratio")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/tiling_dryrun.json")
    a = ap.parse_args()
    import snakemake

    load_start = os.getloadavg()[0]
    runs = {}
    for variant in ("input", "params"):
        peer = dry_run(a.peer, variant)
        big = dry_run(a.tiles, variant)
        runs[variant] = {
            "peer": peer,
            "big": big,
            "ratio_dry_run_time": big["dry_run_s"] / peer["dry_run_s"],
            "ratio_dry_run_cpu": big["dry_run_cpu_s"] / peer["dry_run_cpu_s"],
            "under_one_minute_wall": big["dry_run_s"] < 60.0,
            "under_one_minute_cpu": big["dry_run_cpu_s"] < 60.0,
        }

    result = {
        "what": "snakemake -n of acquire -> tiles (checkpoint) -> N x stereo_tile -> mosaic_dsm",
        "command": f"python bench/tiling_dryrun.py --tiles {a.tiles} --peer {a.peer}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1min_start": load_start,
            "load_avg_1min_end": os.getloadavg()[0],
            "snakemake": snakemake.__version__,
        },
        "variants": {
            "input": "per-tile rule takes tiles.geojson (checkpoint output) as input",
            "params": "per-tile rule gets its bounds as params read once from tiles.geojson",
        },
        "runs": runs,
        "ratio_tiles": a.tiles / a.peer,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
