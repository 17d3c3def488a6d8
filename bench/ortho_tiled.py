"""Benchmark: the true ortho per tile (rules ortho_gains, ortho_tile, ortho) against the whole-AOI ortho, on the
DSM mosaic, views and tile grid of finished bench/scaling_chain.py runs (issue 16).

For each run directory (a finished chain: results/mosaic/<aoi>/dsm.tif, results/acquire/<aoi>/scenes.json,
results/tiles/<aoi>/tiles.geojson), every step runs in its own process under GNU time (peak RSS, CPU):
``ortho_globals_from_files`` (rule ortho_gains), ``ortho_tile_from_files`` per tile, ``assemble_ortho`` (rule
ortho); then the whole-AOI ``ortho_from_files`` twice: with the same shared quantities (the tiles must equal it,
seams included, but for the DSM-hole filling at tile edges) and estimating them on the whole AOI (what the
former single rule did; with an AOI wider than ``ortho.gains_window_m`` its gains and shifts come from the
whole AOI instead of the central block). Differences are reported per band: cells that differ (> 1e-3 DN) and
their distance to the nearest tile seam. The run directories are only read; outputs go to --out.

Usage:  python bench/ortho_tiled.py --runs bench/out/scaling_chain/scaling_chain/600 .../1200
        -> bench/results/ortho_tiled.json + .md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def timed(code: str, cwd: Path) -> dict:
    """Run ``python -c code`` in ``cwd`` under GNU time: peak RSS (MB), CPU (s), wall (s)."""
    tfile = Path("/tmp") / f"ortho_tiled_{os.getpid()}.time"  # never in cwd: the run directory is only read
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = ["/usr/bin/time", "-o", str(tfile), "-f", "%M %U %S %e", sys.executable, "-c", code]
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    rss, user, sys_, wall = tfile.read_text().split()[-4:]
    return {
        "peak_rss_mb": round(int(rss) / 1024, 1),
        "cpu_s": round(float(user) + float(sys_), 2),
        "wall_s": float(wall),
    }


def seam_distance(shape: tuple[int, int], tiles: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(H, W) cells to the nearest edge of the cell's own tile core (a seam unless it is the AOI edge)."""
    d = np.full(shape, np.inf)
    for r0, r1, c0, c1 in tiles:
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inner = [rr - r0 if r0 > 0 else np.inf, r1 - 1 - rr if r1 < shape[0] else np.inf]
        inner += [cc - c0 if c0 > 0 else np.inf, c1 - 1 - cc if c1 < shape[1] else np.inf]
        d[r0:r1, c0:c1] = np.minimum.reduce([np.broadcast_to(x, rr.shape) for x in inner])
    return d


def compare(a: np.ndarray, b: np.ndarray, dist: np.ndarray) -> dict:
    """Per band: cells differing by > 1e-3 (or in NaN-ness), max |a - b|, and the differing cells' seam distance."""
    out = []
    for k in range(a.shape[0]):
        nan_diff = np.isnan(a[k]) != np.isnan(b[k])
        d = np.abs(np.nan_to_num(a[k] - b[k]))
        bad = (d > 1e-3) | nan_diff
        dd = dist[bad]
        out.append(
            {
                "differing_cells": int(bad.sum()),
                "of_cells": int(bad.size),
                "max_abs_diff": float(d.max()),
                "differing_within_8_cells_of_a_seam": int((dd <= 8).sum()),
                "min_seam_distance_of_differing": None if not bad.any() else float(dd.min()),
                "max_seam_distance_of_differing": None if not bad.any() else float(dd.max()),
            }
        )
    return {"bands": out}


def bench_run(run: Path, out: Path) -> dict:
    from sat2lod.io.raster import raster_header, read_raster
    from sat2lod.io.sensor_image import read_tiles
    from sat2lod.ortho_tiled import core_window

    aoi = next((run / "results/mosaic").iterdir()).name
    dsm = run / f"results/mosaic/{aoi}/dsm.tif"
    scenes = run / f"results/acquire/{aoi}/scenes.json"
    grid = run / f"results/tiles/{aoi}/tiles.geojson"
    out.mkdir(parents=True, exist_ok=True)
    shared = out / "ortho_shared.json"
    res: dict = {"run": str(run), "aoi": aoi}
    res["ortho_gains"] = timed(
        f"from sat2lod.ortho_tiled import ortho_globals_from_files as f; f({str(dsm)!r}, {str(scenes)!r}, {str(shared)!r})",
        run,
    )
    tiles = read_tiles(grid)
    head = raster_header(dsm)
    jobs, paths, cores = [], [], []
    for t in sorted(tiles):
        p = out / f"{t}.tif"
        jobs.append(
            timed(
                "import json; from sat2lod.ortho_tiled import ortho_tile_from_files as f; "
                f"s = f({str(dsm)!r}, {str(scenes)!r}, {str(shared)!r}, {str(grid)!r}, {t!r}, {str(p)!r}); "
                f"open({str(out / (t + '.json'))!r}, 'w').write(json.dumps(s))",
                run,
            )
        )
        paths.append(p)
        cores.append(core_window(tiles[t]["core"], head.transform, head.shape))
    summaries = [json.loads((out / f"{t}.json").read_text()) for t in sorted(tiles)]
    res["ortho_tile"] = {
        "jobs": len(jobs),
        "peak_rss_mb": max(j["peak_rss_mb"] for j in jobs),
        "cpu_s": round(sum(j["cpu_s"] for j in jobs), 2),
        "halo_px_max": max(max(s["halo_px"]) for s in summaries),
        "read_cells_over_core_cells": round(
            sum(
                (s["read_window"][1] - s["read_window"][0]) * (s["read_window"][3] - s["read_window"][2])
                for s in summaries
            )
            / sum(
                (s["core_window"][1] - s["core_window"][0]) * (s["core_window"][3] - s["core_window"][2])
                for s in summaries
            ),
            3,
        ),
    }
    tiled = out / "ortho_tiled.tif"
    res["ortho"] = timed(
        "from sat2lod.ortho_tiled import assemble_ortho as f; "
        f"f({[str(p) for p in paths]!r}, {str(dsm)!r}, {str(shared)!r}, {str(scenes)!r}, {str(tiled)!r})",
        run,
    )
    same, own = out / "ortho_whole_shared.tif", out / "ortho_whole.tif"
    res["whole_aoi_shared"] = timed(
        "from sat2lod.ortho import ortho_from_files as f; from sat2lod.ortho_tiled import read_ortho_globals as g; "
        f"f({str(dsm)!r}, {str(scenes)!r}, {str(same)!r}, shared=g({str(shared)!r})[0])",
        run,
    )
    res["whole_aoi"] = timed(
        f"from sat2lod.ortho import ortho_from_files as f; f({str(dsm)!r}, {str(scenes)!r}, {str(own)!r})",
        run,
    )
    dist = seam_distance(head.shape, cores)
    a = read_raster(tiled).array
    a = a if a.ndim == 3 else a[np.newaxis]
    for name, path in (("vs_whole_aoi_shared", same), ("vs_whole_aoi", own)):
        b = read_raster(path).array
        res[name] = compare(a, b if b.ndim == 3 else b[np.newaxis], dist)
    res["same_tags_as_whole_aoi_shared"] = raster_header(tiled).tags == raster_header(same).tags
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ortho_tiled")
    ap.add_argument("--name", default="ortho_tiled")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    t0 = time.time()
    results = [bench_run(r.resolve(), args.out / r.name) for r in args.runs]
    doc = {"runs": results, "load_avg": os.getloadavg(), "seconds": round(time.time() - t0, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"# True ortho per tile vs whole AOI ({args.name})",
        "",
        (
            f"`python bench/ortho_tiled.py --runs {' '.join(str(r) for r in args.runs)}`; load {doc['load_avg'][0]:.1f}"
            " on a shared 2-core machine. Peak RSS / CPU by GNU time per process."
        ),
        "",
        (
            "| AOI | ortho_gains MB / CPU-s | ortho_tile max MB (jobs) / CPU-s | read / core cells | ortho (paste) MB | "
            "whole-AOI MB / CPU-s | tiled vs whole (shared): differing cells (within 8 of a seam), max diff | "
            "vs whole (own gains): differing cells, max diff |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, o = r["vs_whole_aoi_shared"]["bands"], r["vs_whole_aoi"]["bands"]
        lines.append(
            f"| {r['aoi']} | {r['ortho_gains']['peak_rss_mb']} / {r['ortho_gains']['cpu_s']} | "
            f"{r['ortho_tile']['peak_rss_mb']} ({r['ortho_tile']['jobs']}) / {r['ortho_tile']['cpu_s']} | "
            f"{r['ortho_tile']['read_cells_over_core_cells']} | {r['ortho']['peak_rss_mb']} | "
            f"{r['whole_aoi']['peak_rss_mb']} / {r['whole_aoi']['cpu_s']} | "
            + ", ".join(
                f"{b['differing_cells']} ({b['differing_within_8_cells_of_a_seam']}), {b['max_abs_diff']:.3g}"
                for b in s
            )
            + " | "
            + ", ".join(f"{b['differing_cells']}, {b['max_abs_diff']:.3g}" for b in o)
            + " |"
        )
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
